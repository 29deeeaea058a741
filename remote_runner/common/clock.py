"""Time, behind small functions, so tests can make time pass instead of waiting.

Everything in the runner that reads the wall clock, measures an interval or sleeps calls this module;
a test installs its own :class:`Clock` with :func:`use`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """The real clock. Subclass and pass to :func:`use` to control time in tests."""

    def now(self) -> float:
        """UTC seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event`` at most ``seconds``; True when it was set."""
        return event.wait(max(0.0, seconds))


_current: Clock = Clock()


def use(clock: Clock) -> Clock:
    """Install ``clock``; returns the previous one so a test can put it back."""
    global _current
    previous, _current = _current, clock
    return previous


def now() -> float:
    return _current.now()


def monotonic() -> float:
    return _current.monotonic()


def sleep(seconds: float) -> None:
    _current.sleep(seconds)


def wait(event: threading.Event, seconds: float) -> bool:
    return _current.wait(event, seconds)


def utc_iso(epoch: float | None = None) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2026-11-29T23:00:00.123Z."""
    moment = datetime.fromtimestamp(now() if epoch is None else epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def batch_stamp(epoch: float | None = None) -> str:
    """The UTC stamp of a batch folder name: YYYYmmddTHHMMSSZ."""
    return datetime.fromtimestamp(now() if epoch is None else epoch, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
