"""Google Cloud: the adapters that talk to it and the figures that price it.

Owns: the results upload to Cloud Storage and its state file (upload, upload_state), the worker
group's Compute API calls (mig), machine prices (pricing, the generated price_table), the spend cap's
meter (spend) and powering the VM off (shutdown).

May import: :mod:`remote_runner.common` only. It knows nothing of experiments or batches: callers hand
it folders, numbers and names (checked by the import-linter contract in pyproject.toml).
"""
