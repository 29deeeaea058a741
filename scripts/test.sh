#!/usr/bin/env bash
# The test command: installs and starts everything the tests need (scripts/bootstrap.sh), then runs
# the whole suite (unit, Pulumi mocks, integration on the real Docker engine, sshd, GCS emulator).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/bin:$PATH"   # Debian's docker client, matching the engine bootstrap started
exec .venv/bin/python -m pytest "$@"
