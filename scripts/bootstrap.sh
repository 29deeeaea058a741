#!/usr/bin/env bash
# Installs and starts everything the harness and its tests need on a fresh Debian 12 machine, as root:
# Debian packages, a Docker engine, the debian:bookworm-slim base image (built with debootstrap where
# no registry can be reached), and the project's virtualenv. Idempotent: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
# The cluster-mode tests push and pull images through a registry on loopback (tests/cluster).
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
# Headless Chromium renders the HTML report in tests/results/test_report_render.py.
command -v chromium >/dev/null || need_apt+=(chromium)
# The virtualenv needs ensurepip, which Debian ships separately from python3.
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The preinstalled /usr/local/bin/docker client has no buildx; Debian's 20.10 client matches the engine.
export PATH="/usr/bin:$PATH"
start_dockerd() {
  log "starting dockerd (log: /tmp/dockerd.log)"
  mkdir -p /run/sshd
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/dockerd.log"; tail -20 /tmp/dockerd.log >&2; exit 1; }
}
docker info >/dev/null 2>&1 || start_dockerd

# Image builds' RUN steps use the engine's default bridge, docker0. Another dockerd started in the same
# network namespace with --bridge none deletes it (moby's removeDefaultBridgeInterface; a test's second
# engine did, see tests/runner/test_engine_outage.py), after which every such build fails ("could not
# find bridge docker0"). An engine that runs no container is restarted to get it back; one that runs
# containers is left alone (they may be someone's batch) and the set-up stops saying why.
if ! ip link show docker0 >/dev/null 2>&1; then
  if [ -n "$(docker ps -q)" ]; then
    log "the Docker engine has lost its default bridge docker0 (image builds need it) and runs containers:"
    log "restart dockerd once they are done, then run this again"
    exit 1
  fi
  log "the Docker engine has lost its default bridge docker0 and runs no container: restarting it"
  pkill -x dockerd || true
  for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
  start_dockerd
  ip link show docker0 >/dev/null 2>&1 || { log "dockerd restarted without docker0; see /tmp/dockerd.log"; exit 1; }
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if ! docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    log "no registry reachable: building debian:bookworm-slim with debootstrap (about 2 minutes)"
    rootfs=$(mktemp -d /tmp/bookworm-rootfs.XXXXXX)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/tmp/debootstrap.log 2>&1 \
      || { log "debootstrap failed; see /tmp/debootstrap.log"; tail -20 /tmp/debootstrap.log >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log "installing Python dependencies into .venv"
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
log "ready"
