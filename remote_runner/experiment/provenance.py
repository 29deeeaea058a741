"""What a run's numbers came from, for its metadata.json (issue 22): the model files mounted (sha256
and size), the tool's version string, the images (ids, digests, labels, build arguments), the CPU
model and count the tool container saw, the node, its machine type and kernel, and each container's
peak memory.

The parsing is pure; the reads are small and each says why when it has no answer (a missing figure is
``None`` with a ``*_source`` or ``*_problem`` beside it, never a guess).

- Model files: hashing two 5.5 GB files takes tens of seconds, so each file's sha256 is cached in the
  batch folder (``.model-sha256.json``, a dot-file: never uploaded) by path, size and mtime.
- Machine type: Google's metadata server (``instance/machine-type``), asked once per process with a
  short time-out; elsewhere ``None`` ("no metadata server").
- Peak memory: the container's own cgroup maximum (cgroup v1 ``memory.max_usage_in_bytes``, v2
  ``memory.peak``, kernels 5.19 and later), read on the host every few seconds while the tool runs
  and at the end; where the host's cgroup files are not visible (a runner in a container) it is read
  inside the container once, just before it is stopped. A container that exited early keeps the
  last reading (its cgroup is gone with it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from remote_runner.analysis import tool_log

#: inside a container: its CPUs, the CPU model and the kernel, one per line
CPU_PROBE = (
    "sh",
    "-c",
    "nproc; grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//'; uname -r",
)
#: inside a container: its peak memory in bytes (cgroup v1, else v2)
PEAK_MEMORY_PROBE = (
    "sh",
    "-c",
    "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.peak",
)
HASH_CACHE = ".model-sha256.json"
_CHUNK = 8 * 1024 * 1024
_cache_lock = threading.Lock()
_machine_type: list[str | None] = []


def parse_cpu_probe(output: str) -> dict[str, Any]:
    lines = [x.strip() for x in output.strip().splitlines()]
    count = int(lines[0]) if lines and lines[0].isdigit() else None
    return {
        "count": count,
        "model": lines[1] if len(lines) > 1 and lines[1] else None,
        "kernel": lines[2] if len(lines) > 2 and lines[2] else None,
    }


#: where a container's peak memory lies on the host, by cgroup version and Docker's cgroup driver
HOST_PEAK_PATHS = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",  # v1, cgroupfs
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes",  # v1, systemd
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",  # v2, systemd
    "/sys/fs/cgroup/docker/{id}/memory.peak",  # v2, cgroupfs
)


def host_peak_memory(container_id: str, root: str = "") -> int | None:
    """The container's peak memory from its cgroup on the host (``root`` prefixes the paths, for
    tests), None where none of :data:`HOST_PEAK_PATHS` is readable."""
    if not re.fullmatch(r"[0-9a-f]{64}", container_id or ""):
        return None
    for pattern in HOST_PEAK_PATHS:
        try:
            text = Path(root + pattern.format(id=container_id)).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def parse_peak_memory(output: str) -> int | None:
    text = output.strip().splitlines()[-1].strip() if output.strip() else ""
    return int(text) if text.isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(models_dir: Path, cache_dir: Path) -> list[dict[str, Any]]:
    """Every file under ``models_dir`` (sorted by relative path): name, size, sha256. Hashes are
    cached in ``cache_dir/.model-sha256.json`` by absolute path, size and mtime (ns)."""
    cache_file = cache_dir / HASH_CACHE
    with _cache_lock:  # parallel experiments share the cache; a file is hashed once
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        out = []
        for path in sorted(p for p in models_dir.rglob("*") if p.is_file()):
            st = path.stat()
            key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
            digest = cache.get(key)
            if not isinstance(digest, str):
                digest = cache[key] = _sha256(path)
            out.append({"name": str(path.relative_to(models_dir)), "size": st.st_size, "sha256": digest})
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs the next run the hashing
    return out


def machine_type(timeout: float = 1.0) -> str | None:
    """The Google Cloud machine type of this VM (``n1-standard-32``), None off Google Cloud."""
    if _machine_type:
        return _machine_type[0]
    # GCE_METADATA_HOST points it at a stand-in (remote_runner/cloud/mig.py), Google's server by default
    from remote_runner.cloud.mig import metadata_url

    url = f"{metadata_url()}/instance/machine-type"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})  # noqa: S310 (http)
    value: str | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed http URL
            value = response.read().decode("utf-8", "replace").rsplit("/", 1)[-1].strip() or None
    except (urllib.error.URLError, OSError, ValueError):
        value = None
    _machine_type.append(value)
    return value


def _family(kind: str | None) -> str | None:
    if not kind:
        return None
    from remote_runner.cloud import pricing

    try:
        return pricing.family_of(kind)
    except ValueError:
        return kind.split("-", 1)[0]


def host() -> dict[str, Any]:
    """The node the run ran on: its host name, machine type (where known) and kernel."""
    kind = machine_type()
    return {
        "node": os.environ.get("LLAMARESTTEST_NODE") or socket.gethostname(),
        "machine_type": kind,
        "machine_type_source": "google metadata server" if kind else "unknown (no metadata server)",
        # the family (n1, n2d, c3, ...): CPU speed differs between families, so a batch keeps one
        "machine_family": _family(kind),
        "kernel": platform.release(),
    }


def image_facts(info: dict[str, Any] | None) -> dict[str, Any]:
    """Id, registry digests and labels of a ``docker image inspect`` answer."""
    if info is None:
        return {"id": None, "repo_digests": [], "labels": {}}
    config = info.get("Config") or {}
    return {
        "id": info.get("Id"),
        "repo_digests": list(info.get("RepoDigests") or []),
        "labels": dict(config.get("Labels") or {}),
    }


#: image labels that name a version (OCI annotations), in the order they are tried
VERSION_LABELS = ("org.opencontainers.image.version", "org.opencontainers.image.revision")


def tool_version(log_text: str, image: dict[str, Any], build_args: dict[str, str]) -> dict[str, str | None]:
    """The tool's version string and where it came from: the tool at start (a ``TOOL_VERSION`` line of
    its log), else an OCI version label of its image, else the build arguments that pin it (an
    upstream commit or image tag)."""
    said = tool_log.version(log_text)
    if said:
        return {"text": said, "source": "tool (TOOL_VERSION at start)"}
    labels = image.get("labels") or {}
    for label in VERSION_LABELS:
        if labels.get(label):
            return {"text": str(labels[label]), "source": f"image label {label}"}
    if build_args:
        return {
            "text": ", ".join(f"{k}={v}" for k, v in sorted(build_args.items())),
            "source": "build arguments of its image",
        }
    return {"text": None, "source": "unknown: the tool prints none, its image has no version label"}
