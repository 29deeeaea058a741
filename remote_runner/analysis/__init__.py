"""Analysis: what a run folder and a batch folder mean, as numbers, tables and a report.

Owns: reading what a run recorded (traffic, tool_log), the metrics and fault counts (metrics, faults,
fault_counts, fault_keys, cumulative), the trust checks (verification), per-run and per-batch
summaries (results, summaries), the statistics of a comparison (stats) and the report
(report/: document, tables, figures; fault_report for its "Confirmed faults" section).

May import: :mod:`remote_runner.common`. It reads folders and files only: never Docker, the cloud or
the batch's state, so a report runs on a laptop on a downloaded batch (checked by the import-linter
contract in pyproject.toml).
"""
