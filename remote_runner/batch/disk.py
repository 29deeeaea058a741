"""Full disks: recognising the error, and the free-space floor checked before each run is admitted.

A full results disk shows up as ``OSError(ENOSPC)``/``EDQUOT`` from a file write, as SQLite's
"database or disk is full" from the journal, or, for Docker's own disk, as "no space left on device"
in a docker command's output. None of these is the experiment's failure: the attempt is kept as
interrupted and the batch stops with :data:`remote_runner.common.exit_codes.DISK_FULL`, to be resumed once
space is freed.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says a disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == 13 or "disk is full" in str(current)
        ):
            return True
        if says_disk_full(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def says_disk_full(text: str | None) -> bool:
    """True when an error text (a docker command's output, a reason) reports a full disk."""
    lower = (text or "").lower()
    return any(t in lower for t in _FULL_TEXTS)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(path).free)


def below_floor(path: Path, floor: int, free: Callable[[Path], int] = free_bytes) -> str | None:
    """One line naming ``path`` and its free space when it is below ``floor`` bytes, else None."""
    try:
        available = free(path)
    except OSError as exc:
        return f"cannot read the free space of {path}: {exc}"
    if available < floor:
        return (
            f"disk full: {path} has {fmt_bytes(available)} free, below min_free_disk {fmt_bytes(floor)}; "
            "free space (or lower min_free_disk) and resume the batch"
        )
    return None


def full_message(path: Path, exc: BaseException | str) -> str:
    """The one line a full disk is reported with: the path, its free space now, and the error."""
    try:
        available = fmt_bytes(free_bytes(path))
    except OSError:
        available = "unknown"
    return f"disk full: {path} has {available} free ({exc}); free space and resume the batch"
