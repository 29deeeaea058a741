from __future__ import annotations

import sqlite3
from pathlib import Path

from remote_runner.batch import journal
from remote_runner.batch.plan import expand
from remote_runner.common import clock
from remote_runner.experiment.run_key import RunKey


class FrozenClock(clock.Clock):
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def test_states_attempts_and_failures(tmp_path: Path):
    previous = clock.use(FrozenClock(1000.0))
    try:
        j = journal.Journal(tmp_path / "journal.sqlite")
        keys = expand(("a",), ("t",), 2)
        j.add_runs(keys)
        j.add_runs(keys)  # idempotent (resume)
        assert j.counts() == {"pending": 2, "running": 0, "succeeded": 0, "failed": 0, "interrupted": 0}
        k = keys[0]
        assert j.start_attempt(k, "0-7;8-15") == 1
        row = j.get(k)
        assert (row.status, row.attempts, row.cpuset, row.started) == ("running", 1, "0-7;8-15", 1000.0)
        assert j.fail_attempt(k, "tool crashed (exit 3)", max_attempts=2) == "pending"
        assert j.start_attempt(k, "") == 2
        j.interrupt(k)
        assert j.get(k).status == "interrupted"
        assert j.requeue_unfinished() == [k]
        row = j.get(k)
        assert (row.status, row.failures) == ("pending", 1)  # the interruption did not count
        assert j.start_attempt(k, "") == 3
        assert j.fail_attempt(k, "api not ready after 3 s", max_attempts=2) == "failed"
        row = j.get(k)
        assert (row.status, row.failures, row.reason) == ("failed", 2, "api not ready after 3 s")
        j.start_attempt(keys[1], "")
        j.succeed(keys[1])
        j.close()
        # a runner killed mid-run leaves "running" behind: the next one re-queues it
        j = journal.Journal(tmp_path / "journal.sqlite")
        assert [e[4] for e in j.events()].count("succeeded") == 1
        assert j.counts()["failed"] == 1 and j.counts()["succeeded"] == 1
        j.close()
    finally:
        clock.use(previous)
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_state_is_committed_before_the_side_effect(tmp_path: Path):
    """Another connection (as after kill -9) sees 'running' as soon as start_attempt returns."""
    j = journal.Journal(tmp_path / "journal.sqlite")
    key = RunKey(1, "a", "t")
    j.add_runs([key])
    j.start_attempt(key, "")
    other = sqlite3.connect(tmp_path / "journal.sqlite")
    assert other.execute("SELECT status, attempts FROM runs").fetchall() == [("running", 1)]
    other.close()
    j.close()
