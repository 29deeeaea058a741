#!/bin/sh
# Puts the runner settings handed over in LLAMARESTTEST_EXPERIMENT_JSON where the runner's command
# (the same as the VM's systemd unit) reads them, then becomes that command, so SIGTERM reaches it.
set -eu
mkdir -p /opt/llamaresttest/current
printf '%s\n' "${LLAMARESTTEST_EXPERIMENT_JSON:?the container needs LLAMARESTTEST_EXPERIMENT_JSON}" \
  > /opt/llamaresttest/current/experiment.json
exec "$@"
