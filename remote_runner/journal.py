"""The batch's durable state: SQLite (WAL) in the batch folder.

Every change of a run's state is committed before the side effect it announces (the runner marks a
run ``running`` before it creates a container), so after ``kill -9`` or a reboot the journal says
which runs may have left containers behind and must be re-queued.

Statuses: pending, running, succeeded, failed (attempts exhausted), interrupted (SIGTERM).
``attempts`` counts attempts started (it numbers ``attempts/attempt-<k>``); ``failures`` counts the
failed ones, which alone count against ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from remote_runner import clock
from remote_runner.plan import RunKey

PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "pending", "running", "succeeded", "failed", "interrupted"
STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED)
FINISHED = (SUCCEEDED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  api TEXT NOT NULL, tool TEXT NOT NULL, repetition INTEGER NOT NULL,
  position INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  reason TEXT,
  cpuset TEXT,
  started REAL, finished REAL,
  uploaded INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (api, tool, repetition)
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, at REAL NOT NULL,
  api TEXT, tool TEXT, repetition INTEGER, event TEXT NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class RunRow:
    key: RunKey
    position: int
    status: str
    attempts: int
    failures: int
    reason: str | None
    cpuset: str | None
    started: float | None
    finished: float | None
    uploaded: bool


_COLUMNS = (
    "api, tool, repetition, position, status, attempts, failures, reason, cpuset, started, finished, uploaded"
)


def _row(r: tuple) -> RunRow:
    return RunRow(RunKey(r[2], r[0], r[1]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]))


class Journal:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        else:
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Iterable = ()) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, tuple(params))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """Rolls back only a transaction still open: SQLite ends it by itself on some errors (a
        failed COMMIT on a full disk), and a second error here would hide the first (SQLITE_FULL)."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _event(self, key: RunKey | None, event: str, detail: str | None = None) -> None:
        self._write(
            "INSERT INTO events (at, api, tool, repetition, event, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (
                clock.now(),
                key.api if key else None,
                key.tool if key else None,
                key.repetition if key else None,
                event,
                detail,
            ),
        )

    # --- meta -----------------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # --- runs -----------------------------------------------------------------------------------
    def add_runs(self, keys: Iterable[RunKey]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for position, key in enumerate(keys):
                    self._db.execute(
                        "INSERT OR IGNORE INTO runs (api, tool, repetition, position) VALUES (?, ?, ?, ?)",
                        (key.api, key.tool, key.repetition, position),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def runs(self, status: str | None = None) -> list[RunRow]:
        sql = f"SELECT {_COLUMNS} FROM runs"
        params: tuple = ()
        if status:
            sql += " WHERE status=?"
            params = (status,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY position", params).fetchall()
        return [_row(r) for r in rows]

    def get(self, key: RunKey) -> RunRow:
        with self._lock:
            r = self._db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE api=? AND tool=? AND repetition=?",
                (key.api, key.tool, key.repetition),
            ).fetchone()
        if r is None:
            raise KeyError(key)
        return _row(r)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        with self._lock:
            for status, n in self._db.execute("SELECT status, count(*) FROM runs GROUP BY status"):
                out[status] = n
        return out

    def start_attempt(self, key: RunKey, cpuset: str) -> int:
        """Marks ``key`` running (before any container exists); returns the attempt number."""
        with self._lock:
            self._write(
                "UPDATE runs SET status='running', attempts=attempts+1, cpuset=?, started=?, finished=NULL, "
                "reason=NULL "
                "WHERE api=? AND tool=? AND repetition=?",
                (cpuset, clock.now(), key.api, key.tool, key.repetition),
            )
            attempt = self.get(key).attempts
        self._event(key, "started", f"attempt {attempt} cpuset {cpuset or '-'}")
        return attempt

    def succeed(self, key: RunKey) -> None:
        self._write(
            "UPDATE runs SET status='succeeded', reason=NULL, finished=? "
            "WHERE api=? AND tool=? AND repetition=?",
            (clock.now(), key.api, key.tool, key.repetition),
        )
        self._event(key, "succeeded")

    def fail_attempt(self, key: RunKey, reason: str, max_attempts: int) -> str:
        """Counts a failed attempt; the run goes back to pending, or to failed once attempts are spent."""
        with self._lock:
            row = self.get(key)
            failures = row.failures + 1
            status = FAILED if failures >= max_attempts else PENDING
            self._write(
                "UPDATE runs SET status=?, failures=?, reason=?, finished=? "
                "WHERE api=? AND tool=? AND repetition=?",
                (status, failures, reason, clock.now(), key.api, key.tool, key.repetition),
            )
        self._event(key, "attempt failed", reason)
        return status

    def interrupt(self, key: RunKey, reason: str = "runner stopped") -> None:
        self._write(
            "UPDATE runs SET status='interrupted', reason=?, finished=? "
            "WHERE api=? AND tool=? AND repetition=?",
            (reason, clock.now(), key.api, key.tool, key.repetition),
        )
        self._event(key, "interrupted", reason)

    def requeue_unfinished(self, detail: str = "runner was stopped during this run") -> list[RunKey]:
        """On resume: runs left running (runner killed) or interrupted go back to pending; an
        interruption is not a failed attempt."""
        with self._lock:
            keys = [r.key for r in self.runs() if r.status in (RUNNING, INTERRUPTED)]
            for key in keys:
                self._write(
                    "UPDATE runs SET status='pending' WHERE api=? AND tool=? AND repetition=?",
                    (key.api, key.tool, key.repetition),
                )
        for key in keys:
            self._event(key, "requeued", detail)
        return keys

    def mark_uploaded(self, keys: Iterable[RunKey]) -> None:
        for key in keys:
            self._write(
                "UPDATE runs SET uploaded=1 WHERE api=? AND tool=? AND repetition=?",
                (key.api, key.tool, key.repetition),
            )

    def events(self) -> list[tuple[float, str | None, str | None, int | None, str, str | None]]:
        with self._lock:
            return self._db.execute(
                "SELECT at, api, tool, repetition, event, detail FROM events ORDER BY id"
            ).fetchall()
