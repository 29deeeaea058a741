#!/bin/sh
# Puts the runner settings handed over in LLAMARESTTEST_EXPERIMENT_JSON where the runner's command
# (the same as the VM's systemd unit) reads them, then runs that command, forwarding SIGTERM to it.
# Docker's restart policy "on-failure" knows no list of success codes, so the exit codes are mapped
# here the way the VM's unit maps them (SuccessExitStatus, RestartPreventExitStatus;
# remote_runner/common/exit_codes.py): 3 (done with failed runs) and 143 (stopped) are success; 2 (bad
# settings), 4 (batch held by another runner), 6 (disk full) and 7 (preflight found broken APIs)
# would fail again at once, so they end the container without a restart (its log says why); any
# other non-zero code (e.g. 5, the engine went away) is passed on and Docker restarts the runner.
set -eu
mkdir -p /opt/llamaresttest/current
printf '%s\n' "${LLAMARESTTEST_EXPERIMENT_JSON:?the container needs LLAMARESTTEST_EXPERIMENT_JSON}" \
  > /opt/llamaresttest/current/experiment.json
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
  rc=0
  wait "$child" || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
case "$rc" in
  0) exit 0 ;;
  3|143) echo "runner exited with $rc (done with failed runs, or stopped): not restarted" >&2; exit 0 ;;
  2|4|6|7) echo "runner exited with $rc (see remote_runner/common/exit_codes.py and the lines above): not restarted; fix it, then start the container again" >&2; exit 0 ;;
  *) exit "$rc" ;;
esac
