#!/usr/bin/env bash
# The test command: installs and starts everything the tests need (scripts/bootstrap.sh), then runs
# the whole suite (unit, Pulumi mocks, integration on the real Docker engine, sshd, GCS emulator).
# Extra arguments go to pytest. Two lanes (tests/conftest.py): the rehearsal's VM-shaped boxes beside
# the rest of the suite, which keeps its order in one worker; the slowest tests are listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/bin:$PATH"   # Debian's docker client, matching the engine bootstrap started
exec .venv/bin/python -m pytest -n 2 --dist loadgroup --durations=25 "$@"
