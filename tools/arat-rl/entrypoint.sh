#!/usr/bin/env bash
# Runs upstream ARAT-RL (python3 arat-rl.py SPEC BASE_URL SECONDS; the third argument is seconds:
# main() compares it with time.time() differences) against the API behind the recording proxy,
# to one absolute deadline: TIME_BUDGET seconds after the container started. Each run gets the time
# left; a run that ends before the deadline (ARAT-RL dies on the first connection error, for one)
# is started again, and one line per restart tells why:
#   TOOL_RESTART {"run": k, "exit": code, "reason": "<last line>", "tail": [last 10 lines]}
# request_counter.py counts every request ARAT-RL sends through requests; after every run and at
# the end the entrypoint prints   TOOL_REQUESTS sent=<n> answered=<m> runs=<k>
# BASE_URL is http://HOST:PORT plus the spec's base path (ARAT-RL appends the spec's paths to it, as
# its authors ran it, e.g. ".../v2" for languagetool); without it, http://HOST:PORT.
set -uo pipefail

log() { printf '[arat-rl %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "error: $*" >&2; exit 2; }

upstream=${ARAT_RL_HOME:-/opt/ARAT-RL}
python=${PYTHON:-python3}

missing=()
for name in HOST PORT SPEC TIME_BUDGET; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
[ ${#missing[@]} -eq 0 ] || die "missing environment: ${missing[*]}"
[ -r "$SPEC" ] || die "SPEC $SPEC is not readable"
[ -r "$upstream/arat-rl.py" ] || die "$upstream/arat-rl.py is missing (ARAT_RL_HOME=$upstream)"
case ${TIME_BUDGET%.*} in
  ''|*[!0-9]*) die "TIME_BUDGET must be a number of seconds, got '$TIME_BUDGET'" ;;
esac
# ARAT-RL reads Swagger 2 (parameters with 'type', bodies as 'in: body', 'consumes'); an OpenAPI 3
# spec parses, but its request bodies are never sent.
if ! grep -q -E '"?swagger"?[[:space:]]*:' "$SPEC"; then
  log "warning: $SPEC does not look like Swagger 2.0; ARAT-RL ignores OpenAPI 3 request bodies"
fi

start=$(date +%s)
budget=${TIME_BUDGET%.*}
deadline=$((start + budget))
min_run=${MIN_RUN_SECONDS:-3}   # no run is started with less time left than this
base_url=${BASE_URL:-http://$HOST:$PORT}
base_url=${base_url%/}          # upstream appends paths that start with '/'
state=${STATE_DIR:-/tmp/arat-rl}
mkdir -p "$state"
export REQUEST_COUNT_LOG="$state/requests.log"
: > "$REQUEST_COUNT_LOG"

runs=0
restarts=0
child=0
stopping=0

count() { grep -c "^$1\$" "$REQUEST_COUNT_LOG" || true; }
requests_line() { log "TOOL_REQUESTS sent=$(count sent) answered=$(count answered) runs=$runs"; }

# One TOOL_RESTART line: the reason is the last line of a Python traceback when there is one.
restart_line() {
  "$python" - "$1" "$2" "$3" <<'PY'
import json, sys
run, code, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
except OSError:
    lines = []
reason = f"exit {code}"
if any(line.startswith("Traceback (most recent call last)") for line in lines):
    reason = lines[-1].strip()
print("TOOL_RESTART " + json.dumps({"run": run, "exit": code, "reason": reason, "tail": lines[-10:]}))
PY
}

# shellcheck disable=SC2317  # called by the trap below
on_signal() {
  stopping=1
  if [ "$child" -gt 0 ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null
  fi
}
trap on_signal TERM INT

log "budget ${budget}s, target $base_url, spec $SPEC"
cd "$state" || die "cannot enter $state"   # upstream writes http_500_error_report.txt here
while [ "$stopping" -eq 0 ]; do
  left=$((deadline - $(date +%s)))
  [ "$left" -ge "$min_run" ] || break
  runs=$((runs + 1))
  out="$state/run-$runs.log"
  log "run $runs with ${left}s left"
  "$python" "$upstream/arat-rl.py" "$SPEC" "$base_url" "$left" > "$out" 2>&1 &
  child=$!
  tail -n +1 -f --pid="$child" "$out" &
  follower=$!
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  wait "$follower" 2>/dev/null
  log "run $runs exited with $rc"
  requests_line
  [ "$stopping" -eq 0 ] || break
  # A run that reached the deadline is done, whatever its exit code (upstream's final report can
  # fail to serialise the 500s it found); one that ended earlier is a restart.
  if [ $((deadline - $(date +%s))) -ge "$min_run" ]; then
    restarts=$((restarts + 1))
    restart_line "$runs" "$rc" "$out"
    sleep 1
  fi
done
log "done after $runs runs, $restarts restarts"
requests_line
exit 0
