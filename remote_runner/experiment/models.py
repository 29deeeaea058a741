"""Models only where they are needed (cluster mode): a worker fetches the models from the bucket
before its first run of a tool that declares ``needs_models`` (LlamaRestTest), once per node, verified
as the startup script verifies them (size, and MD5 where Cloud Storage has one); the head and workers
that never run such a tool fetch none (about 10 GB and minutes of every worker's first boot).

Concurrent attempts on one node fetch once: the first holds a lock file in the models folder while
the others wait for it. A partial download stays as ``.<name>.partial`` and is resumed by the next
try. Cloud Storage is google-cloud-storage with the VM's credentials (``STORAGE_EMULATOR_HOST``
points it at a stand-in).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("remote_runner.experiment.models")

#: the models LlamaRestTest opens (stacks/config.py MODEL_FILES, the startup script's list)
MODEL_FILES = ("ex.gguf", "ipd.gguf")
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    bucket: str
    path: str  # the folder in the bucket ("" for its top)
    files: tuple[str, ...] = MODEL_FILES

    def object_name(self, name: str) -> str:
        return f"{self.path.strip('/')}/{name}" if self.path.strip("/") else name


def md5_b64(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 (Cloud Storage's checksum, not a security use)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def matches(path: Path, size: int, md5: str | None) -> bool:
    """The file is there with the object's size and (when the object has one) its MD5."""
    return path.is_file() and path.stat().st_size == size and (md5 is None or md5_b64(path) == md5)


def ensure(source: Source, dest: Path, *, client: Any = None) -> list[str]:
    """Makes every model of ``source`` present and verified in ``dest``; returns the problems (an
    empty list when all are there). Idempotent; safe to call from many attempts at once."""
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / ".fetch.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other attempts of this node wait for the first
        try:
            return _fetch(source, dest, client)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch(source: Source, dest: Path, client: Any) -> list[str]:
    if client is None:
        from google.cloud import storage

        client = (
            storage.Client()
            if not os.environ.get("STORAGE_EMULATOR_HOST")
            else storage.Client.create_anonymous_client()
        )
    bucket = client.bucket(source.bucket)
    problems: list[str] = []
    for name in source.files:
        where = f"gs://{source.bucket}/{source.object_name(name)}"
        try:
            blob = bucket.get_blob(source.object_name(name))
        except Exception as exc:  # no access, no network: the attempt fails with this reason
            problems.append(f"cannot read {where}: {type(exc).__name__}: {exc}")
            continue
        if blob is None:
            problems.append(f"{where} does not exist (the stack's modelsBucket/modelsPath)")
            continue
        size, md5 = int(blob.size or 0), blob.md5_hash
        target = dest / name
        if matches(target, size, md5):
            continue
        partial = dest / f".{name}.partial"
        have = partial.stat().st_size if partial.is_file() else 0
        if have > size:
            partial.unlink()
            have = 0
        log.info("fetching %s (%d bytes, %d already here) into %s", where, size, have, dest)
        try:
            if have < size:
                with partial.open("ab") as fh:
                    blob.download_to_file(fh, start=have)
            elif not partial.exists():
                partial.touch()
        except Exception as exc:
            problems.append(f"downloading {where} failed ({type(exc).__name__}: {exc}); the next try resumes")
            continue
        if not matches(partial, size, md5):
            partial.unlink(missing_ok=True)
            problems.append(f"{where}: the download does not match its size or MD5")
            continue
        partial.chmod(0o644)
        partial.replace(target)
        log.info("%s fetched and verified", target)
    return problems


def needed(tools: Sequence[Any]) -> bool:
    return any(getattr(t, "needs_models", False) for t in tools)
