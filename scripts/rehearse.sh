#!/usr/bin/env bash
# The paid path rehearsed on VM-shaped boxes (docs/rehearsal.md): the Pulumi program under mocks
# declares the stack, a local cloud (boxes booting systemd with their own Docker engine, metadata and
# Compute stand-ins, the GCS emulator, a registry box) runs it, and the real deploy provider deploys
# and destroys over SSH. One progress line per step; each scenario ends with its timeline and
# "box-minutes running after the last run". Exit status 1 when a scenario failed.
# Usage: scripts/rehearse.sh [one-vm|spot|cluster|exit-paths|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/bin:$PATH"   # Debian's docker client, matching the engine bootstrap started
exec .venv/bin/python -m tests.rehearsal "${1:-all}"
