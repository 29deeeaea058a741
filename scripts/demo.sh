#!/usr/bin/env bash
# The main job, on any Debian 12 machine as root, no cloud account: sets everything up
# (scripts/bootstrap.sh), builds the images, and runs a real experiment batch on the local Docker
# engine: the offline sample API (demo-shop, instrumented for coverage, behind the recording proxy)
# tested by Schemathesis, RUNS repetitions of BUDGET each. Ends with the batch's results folder, its
# report and a summary table. Extra arguments go to `python -m remote_runner run`.
#   RUNS=3 BUDGET=2m bash scripts/demo.sh
#   bash scripts/demo.sh --results /tmp/my-results
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/bin:$PATH"   # Debian's docker client, matching the engine bootstrap started

# Wheels for the Schemathesis image, fetched on the host: containers here cannot reach PyPI.
bash scripts/wheelhouse.sh schemathesis

exec .venv/bin/python -m remote_runner run \
  --apis demo-shop --tools schemathesis \
  --runs "${RUNS:-2}" --budget "${BUDGET:-60s}" \
  --cpus-per-container "${CPUS_PER_CONTAINER:-0.5}" --memory-per-container "${MEMORY_PER_CONTAINER:-512m}" \
  --min-free-cpus 0 \
  "$@"
