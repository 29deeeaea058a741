"""Engine outages, the pure parts: which docker errors mean "no engine", the bounded backoff, the wait
(with a clock that makes time pass), and the scheduler's reaction with a stand-in experiment. The real
engine restart is in test_engine_outage.py."""

from __future__ import annotations

import threading
from pathlib import Path

from remote_runner.batch import journal
from remote_runner.batch.plan import expand
from remote_runner.batch.scheduler import Scheduler, backoff_delays, wait_for_engine
from remote_runner.common import clock
from remote_runner.common.process import ProcessResult
from remote_runner.experiment.docker_runtime import DockerError, engine_gone_reason, is_engine_error
from remote_runner.experiment.lifecycle import INTERRUPTED, SUCCEEDED, Outcome
from remote_runner.placement.admission import Machine, Measurement, Policy, Request

GIB = 1024**3
GONE = "Cannot connect to the Docker daemon at unix:///run/x/docker.sock. Is the docker daemon running?"


def test_engine_errors_are_told_from_errors_of_the_command():
    assert is_engine_error(GONE)
    assert is_engine_error(
        "error during connect: Get http://%2Frun%2Fx.sock/v1.41/version: dial unix /run/x.sock: "
        "connect: no such file or directory"
    )
    assert is_engine_error("Error response from daemon: the daemon is shutting down")
    for own in (
        "Error: No such container: lrt-1-api",
        'Unable to find image "x:latest" locally',
        "Error response from daemon: Conflict. The container name is already in use",
        "no space left on device",
        "",
    ):
        assert not is_engine_error(own), own
    err = DockerError("inspecting containers", ProcessResult(1, f"noise\n{GONE}\n", False))
    assert err.engine_gone
    assert not DockerError("x", ProcessResult(1, "Error: No such container: c", False)).engine_gone
    reason = engine_gone_reason(f"noise\n{GONE}\n")
    assert reason == f"docker engine unavailable: {GONE}"
    assert is_engine_error(reason)  # the recorded reason is recognised again by the scheduler


def test_backoff_doubles_up_to_its_cap_and_adds_up_to_the_budget():
    assert backoff_delays(10, cap=4) == [1, 2, 4, 3]
    assert backoff_delays(90) == [1, 2, 4] + [4.5] * 18 + [2]  # cap: a twentieth of 90 s
    assert max(backoff_delays(600)) == 30 and sum(backoff_delays(600)) == 600
    assert backoff_delays(0) == []


class Fake(clock.Clock):
    """Time passes only when the code under test waits."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(seconds)
        self.t += seconds
        return False


def test_the_wait_ends_when_the_engine_answers_and_gives_up_after_its_budget(caplog):
    fake = Fake()
    previous = clock.use(fake)
    try:
        answers = iter([GONE, GONE, GONE, None])
        back, waited, last = wait_for_engine(lambda: next(answers), 60, threading.Event())
        assert (back, waited, last) == (True, 6.0, None) and fake.waits == [1, 2, 3]  # cap: 60 / 20
        lines = [r.message for r in caplog.records if "docker engine unavailable for" in r.message]
        assert len(lines) == 3 and "next check in 3 s" in lines[-1] and "Is the docker daemon" in lines[-1]

        fake.waits.clear()
        back, waited, last = wait_for_engine(lambda: GONE, 20, threading.Event())
        assert not back and waited == 20 and last == GONE and sum(fake.waits) == 20

        stop = threading.Event()
        stop.set()
        back, _, _ = wait_for_engine(lambda: GONE, 20, stop)
        assert not back
    finally:
        clock.use(previous)


def scheduler(tmp_path: Path, start, engine_problem, recovered: list[int], wait: float = 30.0):
    jour = journal.Journal(tmp_path / "journal.sqlite")
    jour.add_runs(expand(("a",), ("t",), 3))
    return jour, Scheduler(
        jour=jour,
        machine=Machine(8, 64 * GIB),
        policy=Policy(0),
        request_for=lambda _k: Request(1, GIB),
        start=start,
        measure=lambda: Measurement(free_cpus=8, available_memory=64 * GIB),
        max_attempts=1,  # a counted failure would end the run as failed at once
        stop=threading.Event(),
        engine_problem=engine_problem,
        recover=lambda: recovered.append(1),
        engine_wait_seconds=wait,
    )


def test_an_outage_interrupts_waits_cleans_up_and_every_run_succeeds(tmp_path: Path):
    fake = Fake()
    previous = clock.use(fake)
    engine_up = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def start(key, _reservation, attempt):
        with lock:
            started.append(f"{key.label}#{attempt}")
        if not engine_up.is_set():
            return Outcome(INTERRUPTED, engine_gone_reason(GONE))
        return Outcome(SUCCEEDED)

    def problem():
        if fake.t >= 3:  # back after 3 s of waiting
            engine_up.set()
            return None
        return GONE

    recovered: list[int] = []
    try:
        jour, sched = scheduler(tmp_path, start, problem, recovered)
        assert sched.run() is True
    finally:
        clock.use(previous)
    rows = jour.runs()
    assert [r.status for r in rows] == [SUCCEEDED] * 3
    assert all(r.failures == 0 and r.attempts == 2 for r in rows), rows
    assert recovered == [1] and sched.engine_unavailable is None
    assert sorted(started) == sorted(f"a/t/run-{n}#{k}" for n in (1, 2, 3) for k in (1, 2))


def test_an_engine_that_stays_away_ends_the_batch_unfinished_with_the_line_to_report(tmp_path: Path):
    previous = clock.use(Fake())
    recovered: list[int] = []
    try:
        jour, sched = scheduler(
            tmp_path, lambda *_: Outcome(INTERRUPTED, engine_gone_reason(GONE)), lambda: GONE, recovered, 12
        )
        assert sched.run() is False
    finally:
        clock.use(previous)
    assert sched.engine_unavailable is not None
    assert "no answer for 12 s (engine_wait_seconds 12)" in sched.engine_unavailable
    assert "resume" in sched.engine_unavailable
    rows = jour.runs()
    assert {r.status for r in rows} == {INTERRUPTED} and all(r.failures == 0 for r in rows)
    assert recovered == []  # nothing to clean while nothing answers
