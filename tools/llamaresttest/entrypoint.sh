#!/usr/bin/env bash
# Runs upstream LlamaRestTest (python llamarest.py SPEC BASE_URL) against the API behind the
# recording proxy, restarting it until TIME_BUDGET seconds have passed since the container started.
#  - models: MODELS_DIR must hold ex.gguf and ipd.gguf; they are linked where upstream opens them
#    (../../../ex.gguf and ../../../ipd.gguf from its working directory);
#  - budget: each run gets the time that is left as TIME_BUDGET (patched into upstream's main());
#  - threads: LLAMA_THREADS from CPUS (the runner's CPU limit), else the cgroup CPU quota, else
#    the CPUs visible to the container; at least 1.
set -uo pipefail

log() { printf '[llamaresttest %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "error: $*" >&2; exit 2; }

upstream=${LLAMARESTTEST_HOME:-/opt/LlamaRestTest}
workdir=$upstream/tool/llamaresttest/run   # three levels below $upstream, as upstream expects

missing=()
for name in HOST PORT SPEC TIME_BUDGET MODELS_DIR; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
[ ${#missing[@]} -eq 0 ] || die "missing environment: ${missing[*]}"
[ -r "$SPEC" ] || die "SPEC $SPEC is not readable"

absent=()
for model in ex.gguf ipd.gguf; do
  [ -r "$MODELS_DIR/$model" ] || absent+=("$MODELS_DIR/$model")
done
if [ ${#absent[@]} -gt 0 ]; then
  die "LlamaRestTest needs two models, ex.gguf (example values) and ipd.gguf (inter-parameter dependencies), in MODELS_DIR=$MODELS_DIR; missing: ${absent[*]}"
fi
mkdir -p "$workdir"
ln -sf "$MODELS_DIR/ex.gguf" "$upstream/ex.gguf"
ln -sf "$MODELS_DIR/ipd.gguf" "$upstream/ipd.gguf"

# Threads for llama.cpp: the container's CPU limit, never the host's CPU count.
cpu_limit() {
  if [ -n "${CPUS:-}" ]; then
    echo "$CPUS"
    return
  fi
  local quota period
  if [ -r /sys/fs/cgroup/cpu.max ]; then
    read -r quota period < /sys/fs/cgroup/cpu.max
  elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)
    period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
  fi
  if [ -n "${quota:-}" ] && [ "$quota" != "max" ] && [ "$quota" -gt 0 ] 2>/dev/null; then
    echo $(( (quota + period - 1) / period ))
  else
    nproc
  fi
}
threads=$(cpu_limit)
threads=${threads%.*}
[ "${threads:-0}" -ge 1 ] 2>/dev/null || threads=1
export LLAMA_THREADS=$threads

start=$(date +%s)
budget=${TIME_BUDGET%.*}
deadline=$((start + budget))
min_run=${MIN_RUN_SECONDS:-30}   # loading both models alone takes tens of seconds
export TOOL_DEADLINE=$deadline   # one absolute deadline for every run (patched into upstream's clock)
base_url=${BASE_URL:-http://$HOST:$PORT}   # the runner's BASE_URL carries the spec's base path
child=0
stopping=0
runs=0

# shellcheck disable=SC2317  # called by the trap below
on_signal() {
  stopping=1
  if [ "$child" -gt 0 ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null
  fi
}
trap on_signal TERM INT

log "budget ${budget}s, target $base_url, spec $SPEC, llama threads $LLAMA_THREADS"
cd "$workdir" || die "cannot enter $workdir"
while [ "$stopping" -eq 0 ]; do
  left=$((deadline - $(date +%s)))
  [ "$left" -ge "$min_run" ] || break
  runs=$((runs + 1))
  log "run $runs with ${left}s left"
  runlog=$(mktemp)
  TIME_BUDGET=$left python3 "$upstream/llamarest.py" "$SPEC" "$base_url" > >(tee "$runlog") 2>&1 &
  child=$!
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  log "run $runs exited with $rc"
  if [ "$stopping" -eq 0 ] && [ "$(( deadline - $(date +%s) ))" -ge "$min_run" ]; then
    # ended before the deadline: a restart, on record for the runner (remote_runner/analysis/tool_log.py)
    sleep 0.2   # let tee flush
    python3 - "$runs" "$rc" "$runlog" <<'PY'
import json, sys
lines = [l.rstrip("\n") for l in open(sys.argv[3], encoding="utf-8", errors="replace")][-10:]
reason = next((l for l in reversed(lines) if l.strip()), "") or f"exit {sys.argv[2]}"
if not any(reason.startswith(p) for p in ("Traceback",)) and ":" not in reason:
    reason = f"exit {sys.argv[2]}: {reason}"
print("TOOL_RESTART " + json.dumps({"run": int(sys.argv[1]), "exit": int(sys.argv[2]), "reason": reason, "tail": lines}), flush=True)
PY
  fi
  rm -f "$runlog"
  [ "$rc" -eq 0 ] || [ "$stopping" -eq 1 ] || sleep 1
done
log "done after $runs runs"
exit 0
