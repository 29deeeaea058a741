#!/bin/sh
# Runs EvoMaster black-box (--blackBox true --bbSwaggerUrl file://SPEC --bbTargetUrl http://HOST:PORT)
# against the API behind the recording proxy, to one absolute deadline: TIME_BUDGET seconds after
# the container started, as RESTgym-style tool images loop their tool until the budget ends. Each
# run gets the time left minus STOP_MARGIN as --maxTime (EvoMaster writes its tests and reports
# after the search), and its own output folder OUTPUT_DIR/run-<k> (OUTPUT_DIR defaults to
# $TOOL_OUTPUT/evomaster: TOOL_OUTPUT is the run folder's tool-output/, mounted by the runner). A run that ends before the
# deadline is started again, with one line per restart:
#   TOOL_RESTART {"run": k, "exit": code, "reason": "<last line>", "tail": [last 10 lines]}
# EvoMaster has no request count of its own that this script reads: no TOOL_REQUESTS line.
set -u

log() { printf '[evomaster-bb %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "error: $*" >&2; exit 2; }

missing=""
for name in HOST PORT SPEC TIME_BUDGET; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || missing="$missing $name"
done
[ -z "$missing" ] || die "missing environment:$missing"
[ -r "$SPEC" ] || die "SPEC $SPEC is not readable"
budget=${TIME_BUDGET%.*}
case $budget in
  ''|*[!0-9]*) die "TIME_BUDGET must be a number of seconds, got '$TIME_BUDGET'" ;;
esac
jar=${EVOMASTER_JAR:-/evomaster.jar}
java_bin=${JAVA:-java}

start=$(date +%s)
deadline=$((start + budget))
margin=${STOP_MARGIN:-15}
min_run=${MIN_RUN_SECONDS:-10}
# EvoMaster takes the base path from the schema (basePath / servers) and the host from this URL,
# as ARAT-RL's authors ran it (run_tool.py: --bbTargetUrl http://localhost:PORT).
target="http://$HOST:$PORT"
out_root=${OUTPUT_DIR:-${TOOL_OUTPUT:-/tmp}/evomaster}
mkdir -p "$out_root" || die "cannot create OUTPUT_DIR $out_root"
state=${STATE_DIR:-/tmp/evomaster-bb}
mkdir -p "$state"

runs=0
restarts=0
child=0
stopping=0

json_string() {
  printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\010\013-\037' | sed 's/\\/\\\\/g; s/"/\\"/g; s/	/\\t/g')"
}

restart_line() {
  run=$1 code=$2 file=$3
  reason=$(grep -v '^[[:space:]]*$' "$file" | grep -E 'Exception|Error|ERROR' | tail -n 1)
  [ -n "$reason" ] || reason="exit $code"
  tail_json=""
  lines=$(grep -v '^[[:space:]]*$' "$file" | tail -n 10)
  old_ifs=$IFS
  IFS='
'
  for line in $lines; do
    tail_json="$tail_json${tail_json:+, }$(json_string "$line")"
  done
  IFS=$old_ifs
  printf 'TOOL_RESTART {"run": %s, "exit": %s, "reason": %s, "tail": [%s]}\n' \
    "$run" "$code" "$(json_string "$reason")" "$tail_json"
}

# shellcheck disable=SC2317  # called by the trap below
on_signal() {
  stopping=1
  if [ "$child" -gt 0 ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null
  fi
}
trap on_signal TERM INT

log "budget ${budget}s, target $target, spec $SPEC, output $out_root"
while [ "$stopping" -eq 0 ]; do
  left=$((deadline - $(date +%s) - margin))
  [ "$left" -ge "$min_run" ] || break
  runs=$((runs + 1))
  out="$state/run-$runs.log"
  log "run $runs with --maxTime ${left}s"
  # shellcheck disable=SC2086  # JAVA_OPTS is a list of options
  "$java_bin" ${JAVA_OPTS:--XX:MaxRAMPercentage=75} -jar "$jar" --runningInDocker true \
    ${SEED:+--seed "$SEED"} --blackBox true --bbSwaggerUrl "file://$SPEC" --bbTargetUrl "$target" \
    --outputFormat JAVA_JUNIT_4 --maxTime "${left}s" --outputFolder "$out_root/run-$runs" \
    > "$out" 2>&1 &
  child=$!
  tail -n +1 -f "$out" &
  follower=$!
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  sleep 1
  kill "$follower" 2>/dev/null
  wait "$follower" 2>/dev/null
  log "run $runs exited with $rc"
  [ "$stopping" -eq 0 ] || break
  if [ $((deadline - $(date +%s) - margin)) -ge "$min_run" ]; then
    restarts=$((restarts + 1))
    restart_line "$runs" "$rc" "$out"
    sleep 1
  fi
done
log "done after $runs runs, $restarts restarts"
exit 0
