"""One runner per batch: an exclusive ``flock`` on ``<batch>/runner.lock``.

The lock is held for the runner's life and released by the kernel when the process ends, however it
ends (``kill -9`` included), so a stale lock file never blocks a resume. The file records who holds it
(PID, host, start time) so a second runner can say whom it is waiting for. Within one process the lock
is re-entrant (:func:`hold` counts), so the command line and :func:`remote_runner.batch.driver.run_batch`
may both take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from remote_runner.common import clock

LOCK_FILE = "runner.lock"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        pid = self.pid if self.pid is not None else "?"
        host = self.host or "?"
        since = f" since {self.since}" if self.since else ""
        return f"PID {pid} on host {host}{since}"


class BatchBusy(RuntimeError):
    """Another live runner holds the batch's lock."""

    def __init__(self, batch_dir: Path, holder: Holder) -> None:
        super().__init__(
            f"batch {batch_dir.name} is being run by another runner ({holder.describe()}); "
            f"wait for it to end or stop it (kill -TERM {holder.pid if holder.pid is not None else '<pid>'}) "
            "before resuming; lock file: "
            f"{batch_dir / LOCK_FILE}"
        )
        self.batch_dir = batch_dir
        self.holder = holder


def parse_holder(text: str) -> Holder:
    """The holder recorded in a lock file; unknown fields stay None (a half-written file)."""
    try:
        data = json.loads(text)
    except ValueError:
        return Holder(None, None, None)
    if not isinstance(data, dict):
        return Holder(None, None, None)
    pid = data.get("pid")
    host = data.get("host")
    since = data.get("since")
    return Holder(
        pid if isinstance(pid, int) else None,
        host if isinstance(host, str) else None,
        since if isinstance(since, str) else None,
    )


_held: dict[Path, tuple[int, int]] = {}  # resolved batch folder -> (fd, depth)
_held_lock = threading.Lock()


def _acquire(batch_dir: Path) -> int:
    path = batch_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with os.fdopen(os.dup(fd), "r", encoding="utf-8", errors="replace") as f:
            holder = parse_holder(f.read())
        os.close(fd)
        raise BatchBusy(batch_dir, holder) from None
    except BaseException:
        os.close(fd)
        raise
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": clock.utc_iso()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (record + "\n").encode(), 0)
    return fd


def held(batch_dir: Path) -> bool:
    with _held_lock:
        return batch_dir.resolve() in _held


@contextmanager
def hold(batch_dir: Path) -> Iterator[None]:
    """Holds the batch's lock for the block; raises :class:`BatchBusy` at once if another process holds
    it. ``batch_dir`` must exist."""
    key = batch_dir.resolve()
    with _held_lock:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
        else:
            _held[key] = (_acquire(key), 1)
    try:
        yield
    finally:
        with _held_lock:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                os.close(fd)  # closing the last descriptor releases the flock
