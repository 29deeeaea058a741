#!/usr/bin/env bash
# Runs Schemathesis against the API behind the recording proxy, again and again, until TIME_BUDGET
# seconds have passed since the container started. Each run gets the time that is left (minus a
# margin for start-up and report writing) as --max-time, so the last run ends, and writes its
# reports, before the runner stops the container. After every run it prints how many requests the
# run sent (counted from Schemathesis's own reports), and at the end the total:
#   [schemathesis] TOOL_REQUESTS total=<n> runs=<k>
# On SIGTERM/SIGINT the current run is interrupted (SIGINT, so it still writes its reports), counted
# and the total printed.
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
margin=${STOP_MARGIN:-4}        # seconds kept for Schemathesis start-up and report writing
min_run=${MIN_RUN_SECONDS:-5}   # no new run is started with less time than this
workers=${CPUS:-1}
workers=${workers%.*}
[ "${workers:-0}" -ge 1 ] 2>/dev/null || workers=1
reports=${REPORTS_DIR:-/tmp/schemathesis-reports}
mkdir -p "$reports"

total=0
runs=0
child=0
stopping=0

count_run() {
  local n
  n=$(python3 /opt/tool/count_requests.py "$reports/run-$runs.yaml" "$reports/run-$runs.ndjson")
  total=$((total + n))
  log "run $runs: $n requests"
}

finish() {
  log "TOOL_REQUESTS total=$total runs=$runs"
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

log "budget ${budget}s, target http://$HOST:$PORT, spec $SPEC, workers $workers"
while [ "$stopping" -eq 0 ]; do
  left=$((deadline - $(date +%s) - margin))
  [ "$left" -ge "$min_run" ] || break
  runs=$((runs + 1))
  st run "$SPEC" --url "http://$HOST:$PORT" --max-time "$left" --workers "$workers" \
     --no-color --report vcr,ndjson \
     --report-vcr-path "$reports/run-$runs.yaml" --report-ndjson-path "$reports/run-$runs.ndjson" \
     --wait-for-schema 30 &
  child=$!
  # wait returns early when a trapped signal arrives; keep waiting for the run to end.
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  log "run $runs exited with $rc"
  count_run
done
finish
