#!/bin/bash
# Shutdown script of a llamaresttest cluster head, rendered by stacks/startup.py from
# stacks/templates/shutdown.sh.tmpl: change the template, never the rendered copy.
#
# Google's guest agent runs it as root when the head stops: a stop by the API or the console,
# maxRunHours, `pulumi destroy`, the runner's own power-off, a reboot (cloud.google.com/compute/docs/
# shutdownscript). Best effort, and an on-demand VM stopped through the API gets about 90 s for it.
# Unless the head is only rebooting, it resizes the worker group to 0: no worker bills while nobody
# watches it. `release-workers` (remote_runner) resizes the settings' worker_group to 0 with retries
# and reads the size back; it exits 0 when the group is at 0 or the settings name no group.
set -uo pipefail

LOG_FILE=/var/log/llamaresttest-startup.log
REMOTE_ROOT=/opt/llamaresttest
RUNNER_PYTHON=/opt/llamaresttest/venv/bin/python
RUNNER_CONFIG=/opt/llamaresttest/current/experiment.json
# Below Google's 90 s, so the script ends (and says how) before the VM is cut off; -k: then SIGKILL.
RELEASE_TIMEOUT=80

log() {
  printf '%s shutdown: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

# A reboot keeps the batch: the runner resumes it and needs its workers. systemd has queued
# reboot.target when the machine is rebooting (poweroff.target or halt.target when it stops).
rebooting() {
  systemctl list-jobs --no-legend --no-pager 2>/dev/null |
    awk '$2 == "reboot.target" { found = 1 } END { exit !found }'
}

release_workers() {
  local status=0
  if rebooting; then
    log "the head is rebooting: the workers stay for the batch the runner resumes"
    return 0
  fi
  if [[ ! -f "$RUNNER_CONFIG" || ! -x "$RUNNER_PYTHON" ]]; then
    log "no runner deployed ($RUNNER_CONFIG): no worker group to release"
    return 0
  fi
  log "the head is stopping: resizing the worker group to 0 (at most ${RELEASE_TIMEOUT}s)"
  (cd "$REMOTE_ROOT/current" &&
    timeout -k 5 "$RELEASE_TIMEOUT" "$RUNNER_PYTHON" -m remote_runner release-workers --config "$RUNNER_CONFIG") ||
    status=$?
  case "$status" in
    0) log "the worker group is released (at 0, or none configured)" ;;
    124 | 137) log "release-workers did not finish in ${RELEASE_TIMEOUT}s: the workers may still run; resize the group to 0 by hand" ;;
    *) log "release-workers failed with status $status: the workers may still run; resize the group to 0 by hand" ;;
  esac
  return "$status"
}

main() {
  # To the startup script's log on the disk, and through the guest agent to the journal.
  exec > >(tee -a "$LOG_FILE") 2>&1
  release_workers
}

# Sourcing the script (as its tests do) only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
