"""The batch's durable state: SQLite (WAL) in the batch folder.

Every change of a run's state is committed before the side effect it announces (the runner marks a
run ``running`` before it creates a container), so after ``kill -9`` or a reboot the journal says
which runs may have left containers behind and must be re-queued.

Statuses: pending, running, succeeded, failed (attempts exhausted), interrupted (SIGTERM).
``attempts`` counts attempts started (it numbers ``attempts/attempt-<k>``); ``failures`` counts the
failed ones, which alone count against ``max_attempts``.

The ``attempts`` table has one row per attempt (its node in cluster mode, its outcome). A run's
``committed_attempt`` is the one attempt whose results count; it is set in the same transaction that
marks the run succeeded, and only for the run's current attempt (:meth:`Journal.commit_attempt`), so an
attempt the driver gave up on (its node was declared dead) can never be counted, even if it finishes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from remote_runner.common import clock
from remote_runner.experiment.run_key import RunKey

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
CREATE TABLE IF NOT EXISTS attempts (
  api TEXT NOT NULL, tool TEXT NOT NULL, repetition INTEGER NOT NULL, attempt INTEGER NOT NULL,
  node TEXT, started REAL NOT NULL, ended REAL,
  outcome TEXT NOT NULL DEFAULT 'running',
  PRIMARY KEY (api, tool, repetition, attempt)
);
"""

#: outcomes of one attempt in the ``attempts`` table: ``committed`` is the one attempt whose results
#: count (at most one per run); ``lost`` ended with its node (not counted against max_attempts)
ATTEMPT_OUTCOMES = ("running", "committed", "failed", "interrupted", "lost", "abandoned")


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
    #: the attempt whose results count (set when the run succeeded), None before
    committed_attempt: int | None = None


_COLUMNS = (
    "api, tool, repetition, position, status, attempts, failures, reason, cpuset, started, finished, "
    "uploaded, committed_attempt"
)


def _row(r: tuple) -> RunRow:
    return RunRow(
        RunKey(r[2], r[0], r[1]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]), r[12]
    )


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
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
            if "committed_attempt" not in columns:  # a journal made before cluster mode
                self._db.execute("ALTER TABLE runs ADD COLUMN committed_attempt INTEGER")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Iterable = ()) -> None:
        self._transaction((sql, tuple(params)))

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
        """Marks ``key`` running (before any container exists) and opens its attempt row in one
        transaction; returns the attempt number. Attempts of an earlier runner still marked running
        are abandoned: only the newest attempt of a run can ever be committed."""
        now = clock.now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                where = (key.api, key.tool, key.repetition)
                self._db.execute(
                    "UPDATE runs SET status='running', attempts=attempts+1, cpuset=?, started=?, "
                    "finished=NULL, reason=NULL WHERE api=? AND tool=? AND repetition=?",
                    (cpuset, now, *where),
                )
                (attempt,) = self._db.execute(
                    "SELECT attempts FROM runs WHERE api=? AND tool=? AND repetition=?", where
                ).fetchone()
                self._db.execute(
                    "UPDATE attempts SET outcome='abandoned', ended=? "
                    "WHERE api=? AND tool=? AND repetition=? AND outcome='running'",
                    (now, *where),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO attempts (api, tool, repetition, attempt, started) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (*where, attempt, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self._event(key, "started", f"attempt {attempt} cpuset {cpuset or '-'}")
        return attempt

    def place_attempt(self, key: RunKey, attempt: int, node: str) -> None:
        """Records the node an attempt runs on (cluster mode: known once its task started there)."""
        self._write(
            "UPDATE attempts SET node=? WHERE api=? AND tool=? AND repetition=? AND attempt=?",
            (node, key.api, key.tool, key.repetition, attempt),
        )

    def _end_attempt(self, key: RunKey, outcome: str, attempt: int | None = None) -> None:
        """Inside a transaction: closes the run's running attempt (or ``attempt``) with ``outcome``."""
        sql = "UPDATE attempts SET outcome=?, ended=? WHERE api=? AND tool=? AND repetition=? AND "
        params: tuple = (outcome, clock.now(), key.api, key.tool, key.repetition)
        if attempt is None:
            self._db.execute(sql + "outcome='running'", params)
        else:
            self._db.execute(sql + "attempt=?", (*params, attempt))

    def _transaction(self, *steps: tuple[str, tuple]) -> int:
        """Runs ``steps`` in one transaction; returns the first step's row count."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                first = -1
                for sql, params in steps:
                    count = self._db.execute(sql, params).rowcount
                    first = count if first < 0 else first
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return first

    def commit_attempt(self, key: RunKey, attempt: int) -> bool:
        """Cluster mode's commit, one transaction: the run becomes succeeded with ``attempt`` as its
        committed attempt, only if ``attempt`` is still the run's current running attempt. False (and
        nothing changed) for a zombie: an attempt the driver gave up on, whose results never count."""
        where = (key.api, key.tool, key.repetition)
        now = clock.now()
        changed = self._transaction(
            (
                "UPDATE runs SET status='succeeded', reason=NULL, finished=?, committed_attempt=? "
                "WHERE api=? AND tool=? AND repetition=? AND attempts=? AND status='running'",
                (now, attempt, *where, attempt),
            ),
            (
                "UPDATE attempts SET outcome='committed', ended=? "
                "WHERE api=? AND tool=? AND repetition=? AND attempt=? AND outcome='running' "
                "AND (SELECT committed_attempt FROM runs WHERE api=? AND tool=? AND repetition=?)=?",
                (now, *where, attempt, *where, attempt),
            ),
        )
        if changed:
            self._event(key, "succeeded", f"attempt {attempt} committed")
        return changed > 0

    def lose_attempt(self, key: RunKey, reason: str) -> None:
        """The attempt's node died (cluster mode): the run goes back to pending at once and the
        attempt does not count against max_attempts."""
        where = (key.api, key.tool, key.repetition)
        self._transaction(
            (
                "UPDATE runs SET status='pending', reason=?, finished=? "
                "WHERE api=? AND tool=? AND repetition=?",
                (reason, clock.now(), *where),
            ),
            (
                "UPDATE attempts SET outcome='lost', ended=? WHERE api=? AND tool=? AND repetition=? "
                "AND outcome='running'",
                (clock.now(), *where),
            ),
        )
        self._event(key, "attempt lost", reason)

    def attempts_of(self, key: RunKey | None = None) -> list[tuple[RunKey, int, str | None, str]]:
        """(run, attempt, node, outcome) of every attempt, oldest first."""
        sql = "SELECT api, tool, repetition, attempt, node, outcome FROM attempts"
        params: tuple = ()
        if key is not None:
            sql += " WHERE api=? AND tool=? AND repetition=?"
            params = (key.api, key.tool, key.repetition)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY started, attempt", params).fetchall()
        return [(RunKey(r[2], r[0], r[1]), r[3], r[4], r[5]) for r in rows]

    def succeed(self, key: RunKey) -> None:
        where = (key.api, key.tool, key.repetition)
        now = clock.now()
        self._transaction(
            (
                "UPDATE runs SET status='succeeded', reason=NULL, finished=?, committed_attempt=attempts "
                "WHERE api=? AND tool=? AND repetition=?",
                (now, *where),
            ),
            (
                "UPDATE attempts SET outcome='committed', ended=? WHERE api=? AND tool=? AND repetition=? "
                "AND outcome='running'",
                (now, *where),
            ),
        )
        self._event(key, "succeeded")

    def fail_attempt(self, key: RunKey, reason: str, max_attempts: int) -> str:
        """Counts a failed attempt; the run goes back to pending, or to failed once attempts are spent."""
        with self._lock:
            row = self.get(key)
            failures = row.failures + 1
            status = FAILED if failures >= max_attempts else PENDING
            where = (key.api, key.tool, key.repetition)
            self._transaction(
                (
                    "UPDATE runs SET status=?, failures=?, reason=?, finished=? "
                    "WHERE api=? AND tool=? AND repetition=?",
                    (status, failures, reason, clock.now(), *where),
                ),
                (
                    "UPDATE attempts SET outcome='failed', ended=? WHERE api=? AND tool=? AND repetition=? "
                    "AND outcome='running'",
                    (clock.now(), *where),
                ),
            )
        self._event(key, "attempt failed", reason)
        return status

    def interrupt(self, key: RunKey, reason: str = "runner stopped") -> None:
        where = (key.api, key.tool, key.repetition)
        self._transaction(
            (
                "UPDATE runs SET status='interrupted', reason=?, finished=? "
                "WHERE api=? AND tool=? AND repetition=?",
                (reason, clock.now(), *where),
            ),
            (
                "UPDATE attempts SET outcome='interrupted', ended=? WHERE api=? AND tool=? "
                "AND repetition=? AND outcome='running'",
                (clock.now(), *where),
            ),
        )
        self._event(key, "interrupted", reason)

    def requeue_unfinished(self, detail: str = "runner was stopped during this run") -> list[RunKey]:
        """On resume: runs left running (runner killed) or interrupted go back to pending; an
        interruption is not a failed attempt."""
        with self._lock:
            keys = [r.key for r in self.runs() if r.status in (RUNNING, INTERRUPTED)]
            for key in keys:
                where = (key.api, key.tool, key.repetition)
                self._transaction(
                    ("UPDATE runs SET status='pending' WHERE api=? AND tool=? AND repetition=?", where),
                    (
                        "UPDATE attempts SET outcome='abandoned', ended=? WHERE api=? AND tool=? "
                        "AND repetition=? AND outcome='running'",
                        (clock.now(), *where),
                    ),
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
