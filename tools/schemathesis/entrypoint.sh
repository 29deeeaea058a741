#!/usr/bin/env bash
# Runs Schemathesis against the API behind the recording proxy, again and again, until TIME_BUDGET
# seconds have passed since the container started. Each run gets the time that is left (minus a
# margin for start-up and report writing) as --max-time, so the last run ends, and writes its
# output, before the runner stops the container. request_counter.py counts, inside Schemathesis,
# every request sent and every answer received; the entrypoint prints them after every run and at
# the end:
#   [schemathesis ...] TOOL_REQUESTS sent=<n> answered=<m> runs=<k>
# On SIGTERM/SIGINT the current run is interrupted (SIGINT, so it ends its run in order) and the
# totals are printed.
set -uo pipefail

log() { printf '[schemathesis %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

missing=()
for name in HOST PORT SPEC TIME_BUDGET; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "missing environment: ${missing[*]}" >&2
  exit 2
fi
if [ ! -r "$SPEC" ]; then
  log "SPEC $SPEC is not readable" >&2
  exit 2
fi

start=$(date +%s)
budget=${TIME_BUDGET%.*}
deadline=$((start + budget))
margin=${STOP_MARGIN:-4}        # seconds kept for Schemathesis start-up and its summary
min_run=${MIN_RUN_SECONDS:-5}   # no new run is started with less time than this
workers=${SCHEMATHESIS_WORKERS:-${CPUS:-1}}   # the restgym preset sets 1, as RESTgym runs it
workers=${workers%.*}
[ "${workers:-0}" -ge 1 ] 2>/dev/null || workers=1
state=${STATE_DIR:-/tmp/schemathesis}
mkdir -p "$state"

runs=0
child=0
stopping=0

export REQUEST_COUNT_LOG="$state/requests.log"
: > "$REQUEST_COUNT_LOG"

count() {
  grep -c "^$1\$" "$REQUEST_COUNT_LOG" || true
}

finish() {
  log "TOOL_REQUESTS sent=$(count sent) answered=$(count answered) runs=$runs"
  exit 0
}

# shellcheck disable=SC2317  # called by the trap below
on_signal() {
  stopping=1
  if [ "$child" -gt 0 ] && kill -0 "$child" 2>/dev/null; then
    kill -INT "$child" 2>/dev/null
  fi
}
trap on_signal TERM INT

# extra options of `st run` (the restgym preset: --max-examples 1500 --no-shrink), split on spaces
read -r -a extra <<< "${SCHEMATHESIS_ARGS:-}"
log "TOOL_VERSION $(st --version 2>&1 | head -n 1)"
log "budget ${budget}s, target http://$HOST:$PORT, spec $SPEC, workers $workers, options ${extra[*]:-none}, seed ${SEED:-none}"
while [ "$stopping" -eq 0 ]; do
  left=$((deadline - $(date +%s) - margin))
  [ "$left" -ge "$min_run" ] || break
  runs=$((runs + 1))
  # the run's SEED, moved on by one per restart of the loop so a second run does not repeat the first
  seed=()
  [ -n "${SEED:-}" ] && seed=(--seed "$((SEED + runs - 1))")
  # Background jobs of a non-interactive shell ignore SIGINT, and an ignored signal stays ignored
  # across exec: restore its default so Schemathesis turns it into an orderly interruption.
  python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
     st run "$SPEC" --url "http://$HOST:$PORT" --max-time "$left" --workers "$workers" \
     --no-color --wait-for-schema 30 "${seed[@]}" "${extra[@]}" &
  child=$!
  # wait returns early when a trapped signal arrives; keep waiting for the run to end.
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  log "run $runs exited with $rc; requests so far: sent $(count sent), answered $(count answered)"
done
finish
