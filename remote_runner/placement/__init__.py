"""Placement: which pending run starts now, and where.

Owns: the resource accounting (admission), the one small placement interface and its one-machine
implementation (local), the Ray cluster's implementation (cluster) with a node's own cpuset ledger
(node_ledger), and the worker group that follows the work (workers).

May import: :mod:`remote_runner.experiment` (what a placed run does), :mod:`remote_runner.analysis`
(a run is summarised where it ran), :mod:`remote_runner.cloud` and :mod:`remote_runner.common`. It
never imports the batch: the batch hands it runs and gets outcomes back (checked by the import-linter
contract in pyproject.toml).
"""
