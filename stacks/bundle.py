"""The runner bundle: one deterministic archive of exactly what the VM runs, named by its content hash.

The same checkout and the same experiment settings always give byte-identical archives (sorted entries,
fixed mtimes, owners and modes, gzip header without a timestamp), so the hash says whether anything
changed and a re-push of the same hash can be skipped (SkyPilot's wheel hash, DESIGN.md point 10).

Contents: ``remote_runner/``, ``apis/``, ``tools/``, ``infrastructure/``, ``pyproject.toml``, the
experiment settings as ``experiment.json`` (the runner's ``--config`` file, docs/contracts.md) and
``requirements-runner.txt`` (the runner's own dependencies, derived from pyproject.toml so there is a
single list). Caches, byte code, downloaded wheels and results never go in.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUNDLED_DIRS = ("remote_runner", "apis", "tools", "infrastructure")
BUNDLED_FILES = ("pyproject.toml",)
EXPERIMENT_FILE = "experiment.json"
REQUIREMENTS_FILE = "requirements-runner.txt"

# Matched against every path component (directories) or the file name.
EXCLUDED_DIRS = (
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".git",
    "results",
    "*.egg-info",
)
EXCLUDED_FILES = ("*.pyc", "*.pyo", ".DS_Store", "*.swp")
# Wheels downloaded on the host for offline image builds (scripts/wheelhouse.sh): a VM has internet.
EXCLUDED_WHEELHOUSE = ("*.whl", "*.tar.gz", "*.zip")

# Dependencies of the infrastructure program only (operator's machine), not of the runner.
OPERATOR_ONLY_PACKAGES = frozenset(
    {"pulumi", "pulumi-gcp", "pulumi-docker", "pulumi-tls", "pulumi-random", "paramiko"}
)

FIXED_MTIME = 0

# Files that look like secrets: the bundle refuses to build while any sits in the bundled folders
# (secrets reach the VM only as Pulumi secrets, never inside the archive). Names, case-insensitive.
SECRET_NAMES = (
    ".env",
    ".env.*",
    "*.env",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*token*",
    "*secret*",
    "credentials*.json",
    "*service-account*.json",
    "*service_account*.json",
    ".git-credentials",
)
# Contents that give a secret away whatever the file is called (read from the first 64 KiB).
SECRET_MARKERS = (
    (re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(rb'"type"\s*:\s*"service_account"'), "a Google service-account key"),
    (re.compile(rb"^\s*machine\s+\S+\s+login\s", re.MULTILINE), "netrc credentials"),
)


class SecretInBundle(ValueError):
    """Files that look like secrets sit in the bundled folders; nothing was built."""

    def __init__(self, findings: list[tuple[str, str]]) -> None:
        lines = "\n".join(f"  - {path}: {why}" for path, why in findings)
        super().__init__(
            f"refusing to build the runner bundle: {len(findings)} file(s) look like secrets:\n{lines}\n"
            "move them out of remote_runner/, apis/, tools/ and infrastructure/ (pass secrets as "
            "Pulumi secrets: docs/deploy.md)"
        )
        self.findings = findings


def secret_reason(name: str, head: bytes) -> str | None:
    """Why a file named ``name`` starting with ``head`` looks like a secret, or None (pure)."""
    lower = name.lower()
    for pattern in SECRET_NAMES:
        if fnmatch.fnmatch(lower, pattern):
            return f"its name matches {pattern!r}"
    for marker, what in SECRET_MARKERS:
        if marker.search(head):
            return f"it holds {what}"
    return None


def find_secrets(root: Path, files: Iterable[str]) -> list[tuple[str, str]]:
    found = []
    for rel in files:
        with (root / rel).open("rb") as f:
            head = f.read(65536)
        why = secret_reason(rel.rsplit("/", 1)[-1], head)
        if why is not None:
            found.append((rel, why))
    return found


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    size: int
    files: tuple[str, ...]


def _name_of(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runner_requirements(pyproject_text: str) -> list[str]:
    """The runner's dependencies: pyproject's ``dependencies`` minus the operator-only packages."""
    deps = tomllib.loads(pyproject_text)["project"]["dependencies"]
    return [dep for dep in deps if _name_of(dep) not in OPERATOR_ONLY_PACKAGES]


def experiment_json(settings: Mapping[str, Any]) -> bytes:
    """Canonical JSON of the runner settings: sorted keys, so equal settings give equal bytes."""
    return (json.dumps(dict(settings), indent=2, sort_keys=True) + "\n").encode()


def _excluded(rel: str, is_dir: bool) -> bool:
    parts = rel.split("/")
    dirs = parts if is_dir else parts[:-1]
    if any(fnmatch.fnmatch(part, pat) for part in dirs for pat in EXCLUDED_DIRS):
        return True
    if is_dir:
        return False
    name = parts[-1]
    if any(fnmatch.fnmatch(name, pat) for pat in EXCLUDED_FILES):
        return True
    return "wheelhouse" in dirs and any(fnmatch.fnmatch(name, pat) for pat in EXCLUDED_WHEELHOUSE)


def collect_files(root: Path) -> list[str]:
    """Relative paths (POSIX, sorted) of every regular file that goes into the bundle."""
    found: list[str] = [name for name in BUNDLED_FILES if (root / name).is_file()]
    for top in BUNDLED_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            dirnames[:] = [d for d in dirnames if not _excluded(f"{rel_dir}/{d}", is_dir=True)]
            for name in filenames:
                rel = f"{rel_dir}/{name}"
                full = Path(dirpath) / name
                if full.is_symlink() or not full.is_file() or _excluded(rel, is_dir=False):
                    continue
                found.append(rel)
    return sorted(found)


def _tar_info(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mtime = FIXED_MTIME
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parent_dirs(paths: Iterable[str]) -> list[str]:
    dirs: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def archive_bytes(root: Path, settings: Mapping[str, Any]) -> tuple[bytes, tuple[str, ...]]:
    """The archive's bytes and its sorted list of files (pure apart from reading ``root``)."""
    files = collect_files(root)
    secrets = find_secrets(root, files)
    if secrets:
        raise SecretInBundle(secrets)
    extra: dict[str, bytes] = {EXPERIMENT_FILE: experiment_json(settings)}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        reqs = runner_requirements(pyproject.read_text())
        extra[REQUIREMENTS_FILE] = ("\n".join(reqs) + "\n").encode()
    clashes = sorted(set(files) & set(extra))
    if clashes:
        raise ValueError(f"the checkout already holds generated bundle files: {clashes}")
    names = sorted([*files, *extra])

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory in _parent_dirs(names):
            tar.addfile(_dir_info(directory))
        for name in names:
            if name in extra:
                data = extra[name]
                executable = False
            else:
                full = root / name
                data = full.read_bytes()
                executable = bool(full.stat().st_mode & 0o111)
            tar.addfile(_tar_info(name, len(data), executable), io.BytesIO(data))
    packed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that varies between machines.
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue(), tuple(names)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_bundle(root: Path, settings: Mapping[str, Any], out_dir: Path) -> Bundle:
    """Writes ``<out_dir>/<sha256>.tar.gz`` (atomically, once per content) and describes it."""
    data, names = archive_bytes(root, settings)
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{digest}.tar.gz"
    if not path.is_file() or sha256_file(path) != digest:
        tmp = out_dir / f".{digest}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
    return Bundle(path=path, sha256=digest, size=len(data), files=names)


def default_bundle_dir() -> Path:
    """Where bundles are kept on the operator's machine (outside the checkout, so git never sees them)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llamaresttest" / "bundles"
