"""One experiment: a tool against an API in containers, from the images to the run folder.

Owns: the APIs and tools found on disk (catalog), image builds (images), the only Docker adapter
(docker_runtime), one run's lifecycle (lifecycle), a run's identity (run_key), the batch's copies of the
specs (specs, swagger), the metadata-server guard (metadata_guard), the models a node fetches
(models), what a run's numbers came from (provenance) and the preflight smoke runs (preflight).

May import: :mod:`remote_runner.analysis`, :mod:`remote_runner.cloud` and :mod:`remote_runner.common`.
It never decides which run starts or where, and never touches the batch's plan or journal (checked by
the import-linter contract in pyproject.toml).
"""
