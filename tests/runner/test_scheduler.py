"""The scheduler loop with a stand-in for the experiment (the Docker side is covered by the
integration tests): order, retries, interruptions, and the event-driven wake-up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from remote_runner.batch import journal
from remote_runner.batch.plan import expand
from remote_runner.batch.scheduler import Scheduler
from remote_runner.common import clock
from remote_runner.experiment.lifecycle import FAILED, INTERRUPTED, SUCCEEDED, Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement.admission import Machine, Measurement, Policy, Request, Reservation

GIB = 1024**3
IDLE = Measurement(free_cpus=64, available_memory=64 * GIB)


class NoTicks(clock.Clock):
    """The loop's one-second tick never fires: only an event wakes it (a test would hang otherwise)."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(20)


def make(
    tmp_path: Path,
    keys,
    start,
    *,
    cpus=4,
    max_attempts=3,
    measure=lambda: IDLE,
    min_free=0.0,
    before_retry=None,
    stop=None,
    on_finished=None,
):
    j = journal.Journal(tmp_path / "journal.sqlite")
    j.add_runs(keys)
    sched = Scheduler(
        jour=j,
        machine=Machine(cpus, 64 * GIB),
        policy=Policy(min_free),
        request_for=lambda _k: Request(1, GIB),
        start=start,
        measure=measure,
        max_attempts=max_attempts,
        stop=stop or threading.Event(),
        before_retry=before_retry,
        on_finished=on_finished,
    )
    return j, sched


def test_interleaved_order_retries_and_never_more_than_fits(tmp_path: Path):
    keys = expand(("a", "b"), ("t",), 2)
    lock = threading.Lock()
    running: list[RunKey] = []
    peak = [0]
    starts: list[tuple[RunKey, int]] = []
    retried: list[tuple[RunKey, int]] = []

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        with lock:
            running.append(key)
            peak[0] = max(peak[0], len(running))
            starts.append((key, attempt))
        time.sleep(0.05 if key.api == "a" else 0.4)  # a fails first while b still runs
        with lock:
            running.remove(key)
        if key == keys[0] and attempt == 1:
            return Outcome(FAILED, "tool crashed (exit 3)")
        return Outcome(SUCCEEDED)

    j, sched = make(tmp_path, keys, start, cpus=4, before_retry=lambda k, a: retried.append((k, a)))
    assert sched.run() is True
    assert peak[0] == 2  # 4 CPUs, 2 per experiment
    assert starts[:2] == [(keys[0], 1), (keys[1], 1)]
    assert starts[2] == (keys[0], 2)  # the retry keeps its place ahead of repetition 2
    assert [r.status for r in j.runs()] == ["succeeded"] * 4
    assert j.get(keys[0]).failures == 1 and retried == [(keys[0], 1)]
    assert sched.ledger.held == ()
    j.close()


def test_a_run_starts_the_moment_resources_free(tmp_path: Path):
    keys = expand(("a",), ("t",), 2)
    release = threading.Event()
    started: dict[int, float] = {}

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        started[key.repetition] = time.monotonic()
        if key.repetition == 1:
            release.wait(20)
        return Outcome(SUCCEEDED)

    previous = clock.use(NoTicks())
    try:
        j, sched = make(tmp_path, keys, start, cpus=2)  # room for one experiment
        thread = threading.Thread(target=sched.run)
        thread.start()
        deadline = time.monotonic() + 10
        while 1 not in started and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert 2 not in started  # it does not fit while run 1 holds the CPUs
        freed = time.monotonic()
        release.set()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        clock.use(previous)
    assert started[2] - freed < 0.5, started[2] - freed
    assert j.counts()["succeeded"] == 2
    j.close()


def test_attempts_are_bounded_then_the_batch_goes_on(tmp_path: Path):
    keys = expand(("a", "b"), ("t",), 1)
    attempts: list[RunKey] = []

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        attempts.append(key)
        return Outcome(FAILED, "api not ready after 3 s") if key.api == "a" else Outcome(SUCCEEDED)

    j, sched = make(tmp_path, keys, start, max_attempts=3)
    assert sched.run() is True
    assert attempts.count(keys[0]) == 3 and attempts.count(keys[1]) == 1
    a, b = j.runs()
    assert (a.status, a.failures, a.reason) == ("failed", 3, "api not ready after 3 s")
    assert b.status == "succeeded"
    j.close()


def test_a_crash_of_the_experiment_code_is_a_failed_attempt_not_a_crash_of_the_batch(tmp_path: Path):
    keys = expand(("a",), ("t",), 1)

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        raise OSError("disk full")

    j, sched = make(tmp_path, keys, start, max_attempts=2)
    assert sched.run() is True
    row = j.runs()[0]
    assert (row.status, row.reason) == ("failed", "runner error: disk full")
    j.close()


def test_stop_admits_nothing_more_and_marks_running_runs_interrupted(tmp_path: Path):
    keys = expand(("a",), ("t",), 3)
    stop = threading.Event()
    began = threading.Event()

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        began.set()
        stop.wait(20)
        return Outcome(INTERRUPTED, "runner stopped")

    j, sched = make(tmp_path, keys, start, cpus=2, stop=stop)
    thread = threading.Thread(target=sched.run)
    thread.start()
    assert began.wait(10)
    stop.set()
    thread.join(20)
    assert not thread.is_alive()
    assert [r.status for r in j.runs()] == ["interrupted", "pending", "pending"]
    assert j.runs()[0].failures == 0
    j.close()


def test_the_measurement_holds_runs_back_until_it_agrees(tmp_path: Path):
    keys = expand(("a",), ("t",), 1)
    readings = iter([Measurement(0.5, 64 * GIB)] * 2 + [IDLE] * 100)
    started: list[float] = []

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        started.append(time.monotonic())
        return Outcome(SUCCEEDED)

    j, sched = make(tmp_path, keys, start, measure=lambda: next(readings), min_free=1.0)
    begin = time.monotonic()
    assert sched.run() is True
    assert started and started[0] - begin >= 1.5  # two busy readings, re-sampled once a second
    j.close()


def test_the_after_run_hooks_see_which_experiments_are_still_under_way(tmp_path: Path):
    """What the upload hook hands to sync_batch as in_progress: the runs still running (their files
    grow), never the run that just finished."""
    keys = expand(("a", "b"), ("t",), 1)
    b_started, a_looked = threading.Event(), threading.Event()
    seen: dict[RunKey, list[RunKey]] = {}
    holder: dict[str, Scheduler] = {}

    def start(key: RunKey, res: Reservation, attempt: int) -> Outcome:
        if key.api == "a":
            assert b_started.wait(20)  # a ends while b is under way
        else:
            b_started.set()
            assert a_looked.wait(20)  # b keeps running until a's hooks have looked
        return Outcome(SUCCEEDED)

    def on_finished(key: RunKey, outcome: Outcome, final: str) -> None:
        seen[key] = holder["sched"].running_keys()
        if key.api == "a":
            a_looked.set()

    j, sched = make(tmp_path, keys, start, cpus=4, on_finished=on_finished)  # room for both
    holder["sched"] = sched
    assert sched.run() is True
    a, b = keys
    assert seen == {a: [b], b: []}
    assert sched.running_keys() == []
    j.close()
