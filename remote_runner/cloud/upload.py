"""The only module that talks to Google Cloud Storage: incremental, idempotent sync of a batch folder to
``gs://BUCKET/PATH/<batch folder name>/``.

Rules:
- Incremental: one listing of the remote prefix gives every object's size and MD5; a local file whose
  size and MD5 match its object is not sent again. Local MD5s are cached in ``.upload-cache.json``
  (keyed by size and mtime) so a large unchanged database is not re-hashed on every sync; the remote
  listing is always the judge of what is there.
- Never deletes or overwrites anything that is not a newer version of one of our files: there is
  no delete call in this module.
- Retries transient failures (connection errors, time-outs, 408/429/5xx) with exponential back-off
  (tenacity); the client library's own retry is switched off so that one policy applies and tests can
  switch the waits off.
- Never raises for a storage problem: :func:`sync_batch` returns a :class:`SyncResult` listing what is
  still pending; the next call catches up because it compares against the bucket again.
- Dot-files are never sent (temporary files being written atomically, the hash cache).

With ``STORAGE_EMULATOR_HOST`` set, google-cloud-storage talks to that emulator anonymously (tests).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity

from remote_runner.cloud import upload_state

log = logging.getLogger(__name__)

CACHE_NAME = ".upload-cache.json"
TIMEOUT = (10.0, 120.0)  # connect, read (seconds)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    wait_initial: float = 1.0
    wait_max: float = 30.0


NO_WAIT = RetryPolicy(attempts=3, wait_initial=0.0, wait_max=0.0)


@dataclass
class SyncResult:
    bucket: str
    prefix: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # in folders of running experiments

    @property
    def complete(self) -> bool:
        """Everything local (except deferred files) is in the bucket as it is now."""
        return not self.pending and not self.errors

    def describe(self) -> str:
        text = (
            f"gs://{self.bucket}/{self.prefix}: {len(self.uploaded)} uploaded, "
            f"{len(self.unchanged)} unchanged, {len(self.pending)} pending"
        )
        if self.deferred:
            text += f", {len(self.deferred)} deferred (running)"
        if self.errors:
            text += f"; {len(self.errors)} errors, first: {self.errors[0]}"
        return text


def is_transient(exc: BaseException) -> bool:
    """Failures worth retrying: the network or the service hiccuped, not our request or permissions."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code in TRANSIENT_STATUS
    if isinstance(exc, auth_exceptions.TransportError | ConnectionError | TimeoutError):
        return True
    try:
        import requests

        if isinstance(
            exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
        ):
            return True
    except ImportError:  # pragma: no cover - requests comes with google-cloud-storage
        pass
    try:
        from google.resumable_media import common as media_common

        if isinstance(exc, media_common.InvalidResponse):
            status = getattr(exc.response, "status_code", None)
            return status in TRANSIENT_STATUS
    except ImportError:  # pragma: no cover
        pass
    return False


def _retrying(policy: RetryPolicy) -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential(multiplier=policy.wait_initial, max=policy.wait_max),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
    )


def local_files(batch_dir: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, file) for every file to send, in a stable order."""
    for root, dirs, files in os.walk(batch_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_file():
                yield path.relative_to(batch_dir).as_posix(), path


def md5_base64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


class _HashCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.entries: dict[str, list[Any]] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def md5(self, rel: str, path: Path) -> tuple[int, str]:
        st = path.stat()
        cached = self.entries.get(rel)
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [st.st_size, st.st_mtime_ns]:
            return st.st_size, str(cached[2])
        digest = md5_base64(path)
        self.entries[rel] = [st.st_size, st.st_mtime_ns, digest]
        return st.st_size, digest

    def save(self) -> None:
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.entries, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a cache is an optimisation only
            log.warning("cannot save upload cache %s: %s", self.path, exc)


def remote_prefix(batch_dir: Path, path: str) -> str:
    base = path.strip("/")
    return f"{base}/{Path(batch_dir).name}" if base else Path(batch_dir).name


def sync_batch(
    batch_dir: Path,
    bucket: str,
    path: str,
    *,
    retry: RetryPolicy = RetryPolicy(),
    client: Any = None,
    in_progress: Iterable[Path] = (),
) -> SyncResult:
    """Send what is new or changed in ``batch_dir`` to ``gs://bucket/path/<batch_dir name>/``.

    ``in_progress``: run folders of experiments still running; their files change by the second, so
    they are left for a later sync (listed in ``deferred``) instead of being sent half-written every
    time. Never raises for storage or network problems; see :class:`SyncResult`."""
    batch_dir = Path(batch_dir)
    prefix = remote_prefix(batch_dir, path)
    result = SyncResult(bucket=bucket, prefix=prefix)
    cache = _HashCache(batch_dir / CACHE_NAME)
    skip = tuple(Path(d).resolve() for d in in_progress)
    try:
        files = []
        for rel, file in local_files(batch_dir):
            if skip and any(file.resolve().is_relative_to(d) for d in skip):
                result.deferred.append(rel)
            else:
                files.append((rel, file))
    except OSError as exc:
        result.errors.append(f"cannot list {batch_dir}: {exc}")
        return result
    try:
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        remote: dict[str, tuple[int, str | None]] = {}
        for attempt in _retrying(retry):
            with attempt:
                remote = {
                    blob.name: (int(blob.size or 0), blob.md5_hash)
                    for blob in client.list_blobs(bucket, prefix=prefix + "/", retry=None, timeout=TIMEOUT)
                }
        gcs_bucket = client.bucket(bucket)
    except Exception as exc:  # never break the runner: report and let the next sync catch up
        result.errors.append(f"cannot list gs://{bucket}/{prefix}/: {type(exc).__name__}: {exc}")
        result.pending.extend(rel for rel, _ in files)
        upload_state.record(batch_dir, result)
        return result

    unreachable = False
    for rel, file in files:
        if unreachable:
            result.pending.append(rel)
            continue
        name = f"{prefix}/{rel}"
        try:
            size, md5 = cache.md5(rel, file)
        except OSError as exc:  # vanished or unreadable meanwhile
            result.errors.append(f"{rel}: {exc}")
            result.pending.append(rel)
            continue
        if remote.get(name) == (size, md5):
            result.unchanged.append(rel)
            continue
        try:
            for attempt in _retrying(retry):
                with attempt:
                    gcs_bucket.blob(name).upload_from_filename(str(file), retry=None, timeout=TIMEOUT)
            result.uploaded.append(rel)
        except Exception as exc:
            result.errors.append(f"{rel}: {type(exc).__name__}: {exc}")
            result.pending.append(rel)
            # after retries the bucket is still unreachable: do not wait for every remaining file
            unreachable = is_transient(exc)
    cache.save()
    log.info("upload %s", result.describe())
    upload_state.record(batch_dir, result)  # for `status`: when, and what is not yet uploaded
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m remote_runner upload BATCH_DIR --bucket B --path P``: one sync; exit code 0 when the
    bucket holds everything, 1 when something is still pending (run it again), 2 for bad arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m remote_runner upload",
        description="Sync a batch folder to gs://BUCKET/PATH/<batch>/ (incremental, never deletes).",
    )
    parser.add_argument("batch_dir", type=Path)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--path", default="", help="object prefix inside the bucket")
    parser.add_argument("--attempts", type=int, default=RetryPolicy().attempts)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.batch_dir.is_dir():
        print(f"upload: {args.batch_dir} is not a directory", file=sys.stderr)
        return 2
    result = sync_batch(args.batch_dir, args.bucket, args.path, retry=RetryPolicy(attempts=args.attempts))
    print(result.describe())
    for err in result.errors[:20]:
        print(f"  {err}", file=sys.stderr)
    return 0 if result.complete else 1
