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
METADATA_URL=http://metadata.google.internal/computeMetadata/v1
STORAGE_URL=https://storage.googleapis.com/storage/v1
WORK_DIR="$STATE_DIR/startup-tmp"
CURRENT_STEP="starting"
# curl retries what is transient (time-outs, 429, 5xx, a refused connection), never a 403 or 404.
CURL_RETRY=(--retry 5 --retry-connrefused)

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
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
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
  curl -sSf "${CURL_RETRY[@]}" -H 'Metadata-Flavor: Google' \
    "$METADATA_URL/instance/service-accounts/default/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

url_encode() {
  python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# Prints "SIZE MD5" of a Cloud Storage object (MD5 in base64, "-" for composite objects, which have none).
object_size_md5() {
  curl -sSf "${CURL_RETRY[@]}" -H @"$WORK_DIR/auth-header" "$1" |
    python3 -c 'import json, sys; o = json.load(sys.stdin); print(o["size"], o.get("md5Hash") or "-")'
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

download_models() {
  local name object_url metadata size md5 target partial token
  install -d -m 700 "$WORK_DIR"
  # The token goes to curl in a file, never on a command line that `ps` would show.
  token=$(access_token)
  printf 'Authorization: Bearer %s\n' "$token" >"$WORK_DIR/auth-header"
  for name in "${MODEL_FILES[@]}"; do
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
    partial="$MODELS_DIR/.$name.partial"
    curl -sSf "${CURL_RETRY[@]}" -H @"$WORK_DIR/auth-header" -o "$partial" "$object_url?alt=media"
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

  step "add $SSH_USER to the docker group"
  join_docker_group

  step "create folders under $ROOT_DIR"
  install -d -m 755 -o root -g root "$ROOT_DIR" "$MODELS_DIR"
  install -d -m 755 -o "$SSH_USER" -g "$SSH_USER" "$RELEASES_DIR" "$RESULTS_DIR"

  step "download models"
  download_models

  step "done"
  write_marker "$READY_MARKER" "$(date -u +%Y-%m-%dT%H:%M:%SZ) ready"
  log "llamaresttest startup script finished: $READY_MARKER written"
}

# Sourcing the script (as its tests do) only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
