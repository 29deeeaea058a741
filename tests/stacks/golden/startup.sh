#!/bin/bash
# Startup script of the llamaresttest experiment VM, rendered by stacks/startup.py from
# stacks/templates/startup.sh.tmpl: change the template, never the rendered copy.
#
# Google's guest agent runs it on every boot (first boot, reboot, spot restart); every step checks
# before it acts, so running it again is harmless. The ready marker is written last; on any error
# the failed marker holds the reason. -E hands the ERR trap down into functions.
set -Eeuo pipefail
umask 022

LOG_FILE=/var/log/llamaresttest-startup.log
STATE_DIR=/var/lib/llamaresttest
READY_MARKER=/var/lib/llamaresttest/startup.ready
FAILED_MARKER=/var/lib/llamaresttest/startup.failed
ROOT_DIR=/opt/llamaresttest
MODELS_DIR=/opt/llamaresttest/models
RELEASES_DIR=/opt/llamaresttest/releases
RESULTS_DIR=/opt/llamaresttest/results
MODELS_BUCKET=lab-llm-models
MODELS_PATH=LlamaRestTest
MODEL_FILES=(ex.gguf ipd.gguf)
SSH_USER=llamaresttest
CLIENT_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClientKeyForTheGoldenTestOnly0000000000'
HOST_PRIVATE_KEY='-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
-----END OPENSSH PRIVATE KEY-----'
HOST_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTheGoldenTestOnly00000000000000'

PACKAGES=(docker.io python3-venv python3-pip curl ca-certificates)
HOST_KEY_FILE=/etc/ssh/llamaresttest_host_ed25519_key
AUTHORIZED_KEYS_DIR=/etc/ssh/llamaresttest_authorized_keys
SSHD_DROP_IN=/etc/ssh/sshd_config.d/llamaresttest.conf
SUDOERS_FILE=/etc/sudoers.d/llamaresttest
# Google's endpoints, each overridable by the variable Google's own clients read (a test or a
# rehearsal points them at stand-ins; unset, they are Google's): GCE_METADATA_HOST (host[:port], as
# google-auth reads it) and STORAGE_EMULATOR_HOST (a base URL, as google-cloud-storage reads it).
METADATA_URL="http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1"
STORAGE_BASE=${STORAGE_EMULATOR_HOST:-https://storage.googleapis.com}
[[ "$STORAGE_BASE" == *://* ]] || STORAGE_BASE="http://$STORAGE_BASE"
STORAGE_URL="$STORAGE_BASE/storage/v1"
WORK_DIR="$STATE_DIR/startup-tmp"
CURRENT_STEP="starting"
# curl retries what is transient (time-outs, 429, 5xx, a refused connection), never a 403 or 404.
CURL_RETRY=(--retry 5 --retry-connrefused)
# No download can hang a boot: a connection not made in 20 s, or a transfer slower than 1 KiB/s for
# 60 s (a stalled stream), fails (curl exit 28) and the caller's bounded retries take over; a small
# answer (a token, a metadata value) also gets --max-time.
CURL_LIMITS=(--connect-timeout 20 --speed-limit 1024 --speed-time 60)
CURL_SMALL=(--max-time 60)
# apt: a fresh image runs apt-daily, apt-daily-upgrade and unattended-upgrades, which hold apt's
# locks. `-o DPkg::Lock::Timeout` waits only for dpkg's lock: with the lists lock held, apt 2.6
# `apt-get update` exits 100 at once. So the script waits for those units, then retries apt while a
# lock error is all that went wrong, for at most APT_WAIT_SECONDS.
APT_GET=(apt-get)
APT_UNITS=(apt-daily.service apt-daily-upgrade.service unattended-upgrades.service)
APT_WAIT_SECONDS=900
APT_RETRY_PAUSE=10
# Downloads from Cloud Storage (gcs_get): resumed with `-C -` from what is already on disk; retried
# on every transient failure, a transfer broken mid-body included (curl 7.88's --retry does not retry
# that: exit 18); 401/403 retried for AUTH_WAIT_SECONDS after the first one, because a new IAM grant
# takes up to about 7 minutes to apply; a fresh token for every file and after every 401/403.
DOWNLOAD_ATTEMPTS=12
DOWNLOAD_RETRY_PAUSE=10
AUTH_WAIT_SECONDS=600

log() {
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

step() {
  CURRENT_STEP="$1"
  log "step: $1"
}

# Writes a marker in one move, so a reader never sees half of it.
write_marker() {
  printf '%s\n' "$2" >"$1.tmp"
  mv -f "$1.tmp" "$1"
}

on_error() {
  local status=$? line=$1
  # -E also runs this trap in subshells ($(...)); only the script itself reports and stops.
  if ((BASHPID != $$)); then
    exit "$status"
  fi
  trap - ERR
  log "FAILED: step '$CURRENT_STEP' exited with status $status (line $line)"
  write_marker "$FAILED_MARKER" "$(date -u +%Y-%m-%dT%H:%M:%SZ) step '$CURRENT_STEP' failed with status $status at line $line; see $LOG_FILE"
  rm -rf "$WORK_DIR"
  exit "$status"
}

# Writes CONTENT to PATH with MODE and OWNER only when it differs; returns 0 when it changed the file.
install_content() {
  local path=$1 mode=$2 owner=$3 content=$4 tmp
  tmp=$(mktemp "$path.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  if [[ -f "$path" ]] && cmp -s "$tmp" "$path" && [[ "$(stat -c '%a %U:%G' "$path")" == "$mode $owner" ]]; then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$path"
  log "wrote $path"
  return 0
}

install_packages() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "packages already installed: ${PACKAGES[*]}"
    return
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  wait_for_apt_units
  apt_retry update -q
  apt_retry install -y -q --no-install-recommends "${missing[@]}"
}

# Waits (bounded by APT_WAIT_SECONDS) while apt's own timers still run on a fresh image.
wait_for_apt_units() {
  local unit waited=0
  command -v systemctl >/dev/null 2>&1 || return 0
  for unit in "${APT_UNITS[@]}"; do
    while systemctl is-active --quiet "$unit"; do
      if ((waited >= APT_WAIT_SECONDS)); then
        log "$unit still active after ${waited}s; going on (apt_retry waits for its lock)"
        return 0
      fi
      log "waiting for $unit to finish (${waited}s of ${APT_WAIT_SECONDS}s)"
      sleep "$APT_RETRY_PAUSE"
      waited=$((waited + APT_RETRY_PAUSE))
    done
  done
}

# apt-get "$@", retried while it fails on a held apt or dpkg lock, for at most APT_WAIT_SECONDS;
# any other failure, or a lock held longer, fails with apt's own status.
apt_retry() {
  local started=$SECONDS status output
  while true; do
    status=0
    output=$("${APT_GET[@]}" -o DPkg::Lock::Timeout=60 "$@" 2>&1) || status=$?
    printf '%s\n' "$output"
    if ((status == 0)); then
      return 0
    fi
    if ! grep -qiE 'could not get lock|unable to lock|unable to acquire|is held by process' <<<"$output"; then
      return "$status"
    fi
    if ((SECONDS - started >= APT_WAIT_SECONDS)); then
      log "apt-get $1: apt's lock still held after $((SECONDS - started))s; giving up"
      return "$status"
    fi
    log "apt-get $1: another process holds apt's lock; retrying in ${APT_RETRY_PAUSE}s"
    sleep "$APT_RETRY_PAUSE"
  done
}

setup_user() {
  if ! id -u "$SSH_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$SSH_USER"
    log "created user $SSH_USER"
  fi
  # The deploy step installs and controls the runner's systemd unit as this user.
  if install_content "$SUDOERS_FILE" 440 root:root "$SSH_USER ALL=(ALL) NOPASSWD:ALL"; then
    visudo -c -f "$SUDOERS_FILE"
  fi
}

# Experiment containers run third-party code on bridge networks whose traffic the host forwards:
# reject every forwarded packet to the metadata server (the VM's service-account token, the instance
# metadata). The same rule as remote_runner/experiment/metadata_guard.py, which the runner unit also applies.
METADATA_RULE=(-d 169.254.169.254/32 -m comment --comment "llamaresttest: experiment containers never reach the metadata server" -j REJECT)
block_metadata_for_containers() {
  if ! iptables -w 5 -C DOCKER-USER "${METADATA_RULE[@]}" 2>/dev/null; then
    iptables -w 5 -n -L DOCKER-USER >/dev/null 2>&1 || iptables -w 5 -N DOCKER-USER
    iptables -w 5 -I DOCKER-USER 1 "${METADATA_RULE[@]}"
    log "DOCKER-USER rejects containers' traffic to 169.254.169.254"
  fi
}

# What keeps containers off the host's control plane, installed once Docker is up: the metadata
# guard here; a cluster node's script (stacks/templates/cluster.sh.tmpl) redefines it to add Ray's.
# shellcheck disable=SC2317 # not unreachable: main calls it, unless the cluster part replaced it
guard_containers() {
  block_metadata_for_containers
}

# The docker group exists only once docker.io is installed.
join_docker_group() {
  usermod -a -G docker "$SSH_USER"
}

setup_sshd() {
  local changed=0
  install -d -m 755 -o root -g root "$AUTHORIZED_KEYS_DIR"
  install_content "$HOST_KEY_FILE" 600 root:root "$HOST_PRIVATE_KEY" && changed=1
  install_content "$HOST_KEY_FILE.pub" 644 root:root "$HOST_PUBLIC_KEY" && changed=1
  install_content "$AUTHORIZED_KEYS_DIR/$SSH_USER" 644 root:root "$CLIENT_PUBLIC_KEY" && changed=1
  # Only the stack's host key is offered, so clients can pin it; our key file is read besides the
  # user's own, and the guest agent (which manages ~/.ssh and the default host keys) never touches it.
  install_content "$SSHD_DROP_IN" 644 root:root "HostKey $HOST_KEY_FILE
AuthorizedKeysFile .ssh/authorized_keys $AUTHORIZED_KEYS_DIR/%u
PasswordAuthentication no
KbdInteractiveAuthentication no" && changed=1
  if ((changed)); then
    sshd -t
    systemctl reload-or-restart ssh
    log "sshd reloaded with the stack's host key"
  else
    log "sshd already configured"
  fi
}

access_token() {
  curl -sSf "${CURL_LIMITS[@]}" "${CURL_SMALL[@]}" "${CURL_RETRY[@]}" -H 'Metadata-Flavor: Google' \
    "$METADATA_URL/instance/service-accounts/default/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

url_encode() {
  python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# A fresh token for the next request, into the header file curl reads (never on a command line).
write_auth_header() {
  local token
  token=$(access_token)
  printf 'Authorization: Bearer %s\n' "$token" >"$WORK_DIR/auth-header"
}

# Progress of gcs_get on stderr: its callers read stdout.
note() {
  log "$@" >&2
}

# gcs_get OUTPUT URL [resume]: fetches URL into OUTPUT with the token, retrying as described at
# DOWNLOAD_ATTEMPTS; with "resume", continues a partial OUTPUT (-C -) instead of starting over.
gcs_get() {
  local output=$1 url=$2 resume=${3:-} attempt=0 status code auth_since=-1
  local range=()
  while true; do
    attempt=$((attempt + 1))
    range=()
    if [[ "$resume" == resume && -s "$output" ]]; then
      range=(-C -)
      note "resuming $(basename "$output") from byte $(stat -c %s "$output")"
    elif [[ "$resume" != resume ]]; then
      rm -f "$output"
    fi
    status=0
    code=$(curl -sS -f "${CURL_LIMITS[@]}" "${range[@]}" -H @"$WORK_DIR/auth-header" \
      -o "$output" -w '%{http_code}' "$url") || status=$?
    if ((status == 0)); then
      return 0
    fi
    # curl exit 22 is an HTTP error (judged by its code); any other exit is the transport's (no
    # answer, a reset, a transfer broken mid-body: exit 18, one stalled below the speed limit: exit
    # 28), which is transient: the next attempt resumes where this one stopped.
    ((status == 22)) || code=000
    case "$code" in
      401 | 403)
        ((auth_since < 0)) && auth_since=$SECONDS
        if ((SECONDS - auth_since >= AUTH_WAIT_SECONDS)); then
          note "GET $url: still $code after $((SECONDS - auth_since))s; does the VM's service account have read access?"
          return 1
        fi
        note "GET $url: $code (a new IAM grant can take minutes to apply); retrying with a new token"
        sleep "$DOWNLOAD_RETRY_PAUSE"
        write_auth_header
        attempt=$((attempt - 1)) # waiting for the grant does not use up the attempts
        continue
        ;;
      404)
        note "GET $url: 404 not found"
        return 1
        ;;
      416) # the partial file does not fit the object (it changed): start over
        note "GET $url: 416, the partial file does not fit; starting over"
        rm -f "$output"
        ;;
      000 | 408 | 429 | 5??) ;; # transport error (no answer, a break mid-body), or transient HTTP
      *)
        note "GET $url: HTTP $code (curl exit $status)"
        return 1
        ;;
    esac
    if ((attempt >= DOWNLOAD_ATTEMPTS)); then
      note "GET $url: failed $attempt times (last: HTTP $code, curl exit $status)"
      return 1
    fi
    note "GET $url: attempt $attempt failed (HTTP $code, curl exit $status); retrying in ${DOWNLOAD_RETRY_PAUSE}s"
    sleep "$DOWNLOAD_RETRY_PAUSE"
  done
}

# Prints "SIZE MD5" of a Cloud Storage object (MD5 in base64, "-" for composite objects, which have none).
object_size_md5() {
  gcs_get "$WORK_DIR/object.json" "$1"
  python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); print(o["size"], o.get("md5Hash") or "-")' \
    "$WORK_DIR/object.json"
}

file_md5() {
  python3 -c '
import base64, hashlib, sys
digest = hashlib.md5()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
print(base64.b64encode(digest.digest()).decode())' "$1"
}

# True when FILE has SIZE bytes and, unless MD5 is "-", that MD5.
file_matches() {
  local file=$1 size=$2 md5=$3
  [[ -f "$file" ]] || return 1
  [[ "$(stat -c %s "$file")" == "$size" ]] || return 1
  [[ "$md5" == "-" ]] && return 0
  [[ "$(file_md5 "$file")" == "$md5" ]]
}

# shellcheck disable=SC2317 # not unreachable: the one VM's main calls it; a cluster's script replaces it
download_models() {
  local name object_url metadata size md5 target partial
  install -d -m 700 "$WORK_DIR"
  for name in "${MODEL_FILES[@]}"; do
    # A fresh token per file: one download can outlast a token's hour.
    write_auth_header
    object_url="$STORAGE_URL/b/$MODELS_BUCKET/o/$(url_encode "$MODELS_PATH/$name")"
    metadata=$(object_size_md5 "$object_url")
    read -r size md5 <<<"$metadata"
    target="$MODELS_DIR/$name"
    if [[ "$md5" == "-" ]]; then
      log "gs://$MODELS_BUCKET/$MODELS_PATH/$name has no MD5 (composite upload): checking its size only"
    fi
    if file_matches "$target" "$size" "$md5"; then
      log "$target is present and verified ($size bytes)"
      continue
    fi
    log "downloading gs://$MODELS_BUCKET/$MODELS_PATH/$name ($size bytes)"
    # The partial file stays across failures and boots: the next try resumes it.
    partial="$MODELS_DIR/.$name.partial"
    if [[ -f "$partial" && "$(stat -c %s "$partial")" -gt "$size" ]]; then
      rm -f "$partial"
    fi
    if [[ ! -f "$partial" || "$(stat -c %s "$partial")" -lt "$size" ]]; then
      gcs_get "$partial" "$object_url?alt=media" resume
    fi
    if ! file_matches "$partial" "$size" "$md5"; then
      rm -f "$partial"
      log "downloaded $name does not match its size or MD5"
      return 1
    fi
    chmod 644 "$partial"
    mv -f "$partial" "$target"
    log "$target downloaded and verified"
  done
  rm -rf "$WORK_DIR"
}

# More steps before the ready marker: none for the one VM; a cluster head's script
# (stacks/templates/cluster.sh.tmpl, appended to this one) redefines it.
# shellcheck disable=SC2317 # not unreachable: main calls it, unless the cluster part replaced it
extra_steps() {
  :
}

main() {
  mkdir -p "$STATE_DIR"
  # Everything the script and its commands print goes to the log file, and on to the serial console.
  exec > >(tee -a "$LOG_FILE") 2>&1
  trap 'on_error $LINENO' ERR

  log "llamaresttest startup script begins"
  # The markers describe this boot's run: whoever waits for them must not see a previous boot's.
  rm -f "$READY_MARKER" "$FAILED_MARKER"
  rm -rf "$WORK_DIR"

  # SSH first: until setup_sshd runs, sshd offers the image's own host key, which the deploy step
  # (pinning the stack's key) refuses. Installing the stack's key before minutes of apt keeps the
  # first `pulumi up` from meeting that key for long.
  step "set up user $SSH_USER"
  setup_user

  step "install ssh host key and authorized key"
  setup_sshd

  step "install packages"
  install_packages

  step "start docker"
  systemctl enable --now docker

  step "keep containers off the metadata server"
  guard_containers

  step "add $SSH_USER to the docker group"
  join_docker_group

  step "create folders under $ROOT_DIR"
  install -d -m 755 -o root -g root "$ROOT_DIR" "$MODELS_DIR"
  install -d -m 755 -o "$SSH_USER" -g "$SSH_USER" "$RELEASES_DIR" "$RESULTS_DIR"

  step "download models"
  download_models

  extra_steps

  step "done"
  write_marker "$READY_MARKER" "$(date -u +%Y-%m-%dT%H:%M:%SZ) ready"
  log "llamaresttest startup script finished: $READY_MARKER written"
}

# Sourcing the script (as its tests do) only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
