"""The scheduler: starts pending runs the moment they fit. The batch around it (place, journal,
hooks, finish, upload, power-off) is :mod:`remote_runner.batch.driver`.

Admission rules (the data is :class:`remote_runner.placement.admission.Ledger`):

1. Each running experiment holds a reservation: 2 containers x ``cpus_per_container`` CPUs and
   2 x ``memory_per_container``. Whole-CPU limits get concrete, disjoint CPU ids (``--cpuset-cpus``,
   lowest free ids first); fractional limits get a ``--cpus`` quota only. The sum of reserved CPUs
   never exceeds the machine's CPUs and the sum of reserved memory never exceeds its memory.
2. A run is admitted only if its reservation fits (rule 1) AND the machine's measurement agrees:
   measured free CPUs (psutil ``cpu_percent`` sampled over an interval by a background sampler,
   never its meaningless first call) minus what was admitted in the same pass is at least
   ``min_free_cpus``, and measured available memory minus the same covers the run's memory.
3. First fit over pending runs in plan order: repetition first, then API, then tool (or, with
   ``shuffle``, a seeded permutation within each repetition: :mod:`remote_runner.batch.plan`), so every
   tool x API gets repetition 1 before any gets repetition 2 (a retried run keeps its place).
4. No fixed sleeps: the loop waits on an event set whenever an experiment ends (or the runner is
   told to stop), so a run starts within a second of its resources freeing; while a measurement holds
   a run back the loop re-samples every second.
5. A failed attempt goes back to pending until it has failed ``max_attempts`` times; an interrupted
   attempt (SIGTERM, runner killed) does not count. SIGTERM: nothing more is admitted, running
   experiments are stopped and marked interrupted.
6. Docker engine outages: an attempt that ends because the engine stopped answering is interrupted,
   not failed. Nothing more is admitted; once every running experiment has ended the scheduler waits
   for the engine (:func:`wait_for_engine`, bounded by ``engine_wait_seconds``, one log line per
   wait), removes the batch's leftovers by label, re-queues the interrupted runs and goes on. An engine
   that never comes back ends the batch with :data:`remote_runner.common.exit_codes.ENGINE_UNAVAILABLE`.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from remote_runner.batch import disk, journal
from remote_runner.common import clock
from remote_runner.experiment import docker_runtime as engine
from remote_runner.experiment.lifecycle import (
    FAILED,
    INTERRUPTED,
    SUCCEEDED,
    Outcome,
)
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement import admission
from remote_runner.placement.admission import (
    Candidate,
    Ledger,
    Machine,
    Measurement,
    Policy,
    Request,
    Reservation,
)
from remote_runner.placement.local import LOST, LocalPlacement, Placement, StartFn

log = logging.getLogger("remote_runner")


class Sampler:
    """Background sampler of free CPUs and memory. The first reading is taken over a full interval,
    so :meth:`measure` never returns psutil's meaningless first ``cpu_percent()`` value."""

    def __init__(self, cpus: int, interval: float = 0.5) -> None:
        import psutil

        self._psutil = psutil
        self._cpus = cpus
        self._interval = interval
        self._latest: Measurement | None = None
        self._first = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed.is_set():
            busy = self._psutil.cpu_percent(interval=self._interval)
            self._latest = Measurement(
                free_cpus=(1.0 - busy / 100.0) * self._cpus,
                available_memory=int(self._psutil.virtual_memory().available),
            )
            self._first.set()

    def measure(self) -> Measurement:
        self._first.wait(self._interval * 4 + 5)
        assert self._latest is not None, "CPU sampler produced no reading"
        return self._latest

    def close(self) -> None:
        self._closed.set()


def backoff_delays(budget: float, first: float = 1.0, cap: float | None = None) -> list[float]:
    """The waits between engine checks: doubling from ``first`` up to ``cap`` (default: a twentieth
    of ``budget``, between 1 and 30 s, so an engine back soon is noticed soon), adding up to exactly
    ``budget`` seconds (the last one shortened), so the wait is bounded."""
    if cap is None:
        cap = min(30.0, max(1.0, budget / 20))
    delays: list[float] = []
    total, delay = 0.0, first
    while total < budget - 1e-9:
        step = min(delay, cap, budget - total)
        delays.append(step)
        total += step
        delay = min(delay * 2, cap)
    return delays


def wait_for_engine(
    problem: Callable[[], str | None], budget: float, stop: threading.Event, *, first: float = 1.0
) -> tuple[bool, float, str | None]:
    """Checks the engine (``problem()`` is None once it answers), waiting :func:`backoff_delays`
    between checks and logging one line per wait. Returns (back, seconds waited, last problem); not
    back when ``budget`` ran out or ``stop`` was set."""
    begin = clock.monotonic()
    last = problem()
    for delay in backoff_delays(budget, first):
        if last is None:
            break
        waited = clock.monotonic() - begin
        log.warning(
            "docker engine unavailable for %.0f s (giving up after %g s): next check in %.0f s: %s",
            waited,
            budget,
            delay,
            last.splitlines()[-1].strip() if last.strip() else last,
        )
        if clock.wait(stop, delay):
            return False, clock.monotonic() - begin, last
        last = problem()
    return last is None, clock.monotonic() - begin, last


@dataclass
class Timeline:
    """When runs started and ended (monotonic seconds), for the benchmark and the log."""

    starts: list[tuple[float, RunKey]]
    ends: list[tuple[float, RunKey]]


#: attempts in a row lost with their node before the next one counts as a failed attempt
LOST_LIMIT = 5


class Scheduler:
    def __init__(
        self,
        *,
        jour: journal.Journal,
        request_for: Callable[[RunKey], Request],
        max_attempts: int,
        stop: threading.Event,
        before_retry: Callable[[RunKey, int], None] | None = None,
        on_finished: Callable[[RunKey, Outcome, str], None] | None = None,
        disk_check: Callable[[], str | None] | None = None,
        engine_problem: Callable[[], str | None] | None = None,
        recover: Callable[[], None] | None = None,
        engine_wait_seconds: float = 600.0,
        placement: Placement | None = None,
        machine: Machine | None = None,
        policy: Policy | None = None,
        start: StartFn | None = None,
        measure: Callable[[], Measurement] | None = None,
        admission_limit: Callable[[int, int], int] | None = None,
        when_nothing_pending: Callable[[], None] | None = None,
    ) -> None:
        """``placement`` decides which run starts where; without one, the placement is one machine
        (``machine``, ``policy``, ``measure`` and ``start``: :class:`LocalPlacement`).
        ``admission_limit(running, pending)``: how many more runs may start now (the spend cap,
        :mod:`remote_runner.cloud.spend`); when it admits none and nothing runs, the batch ends
        (``cap_reached`` says why). ``when_nothing_pending``: called on every turn while runs are
        still running but none waits (the cluster's scale-in)."""
        self.journal = jour
        if placement is None:
            assert machine is not None and start is not None and measure is not None
            placement = LocalPlacement(machine, policy or Policy(), measure, start)
        self.placement = placement
        self.request_for = request_for
        self.max_attempts = max_attempts
        self.stop = stop
        self.before_retry = before_retry
        self.on_finished = on_finished
        #: None while the results disk keeps its floor, else the line that says it does not
        self.disk_check = disk_check
        #: set when a disk filled up (or fell below its floor with nothing running): the batch ends
        #: with the disk-full exit code once its running experiments are done
        self.disk_full: str | None = None
        #: None while the engine answers, else how a running experiment found it gone
        self.engine_problem = engine_problem
        #: after an outage, once the engine is back: removes the batch's leftovers by label
        self.recover = recover
        self.engine_wait_seconds = engine_wait_seconds
        #: set by the first attempt that lost the engine: nothing is admitted until it is back
        self.engine_down = threading.Event()
        self._engine_down_reason = ""
        #: set when the engine did not come back within ``engine_wait_seconds``: the line to report
        self.engine_unavailable: str | None = None
        self.wake = threading.Event()
        #: set when nothing more may start (a disk filled up) while running experiments go on
        self.stop_admitting = threading.Event()
        self.done: queue.Queue[RunKey] = queue.Queue()
        self.workers: dict[RunKey, threading.Thread] = {}
        self.timeline = Timeline([], [])
        self.peak_reserved_cpus = 0.0
        self.admission_limit = admission_limit
        self.when_nothing_pending = when_nothing_pending
        #: set when the admission limit admits nothing more and nothing runs: the line to report
        self.cap_reached: str | None = None
        self._under_way: set[RunKey] = set()  # experiments running now (read from worker threads)
        self._under_way_lock = threading.Lock()

    @property
    def ledger(self) -> Ledger:
        """The one machine's ledger (local placement only)."""
        assert isinstance(self.placement, LocalPlacement)
        return self.placement.ledger

    def running_keys(self) -> list[RunKey]:
        """Runs whose experiment is under way now, so their folders are still being written. A run
        leaves this set when its experiment ends, before its after-run hooks are called."""
        with self._under_way_lock:
            return sorted(self._under_way)

    def _worker(self, key: RunKey, reservation: Reservation, attempt: int) -> None:
        try:
            outcome = self.placement.start(key, reservation, attempt)
        except Exception as exc:  # a bug or a full disk must not take the batch down
            if disk.is_disk_full(exc):
                outcome = Outcome(INTERRUPTED, f"disk full: {exc}")
            elif isinstance(exc, engine.DockerError) and exc.engine_gone:
                outcome = Outcome(INTERRUPTED, engine.engine_gone_reason(exc.result.output))
            else:
                log.error("%s attempt %d: runner error\n%s", key.label, attempt, traceback.format_exc())
                outcome = Outcome(FAILED, f"runner error: {exc}")
        finally:
            with self._under_way_lock:
                self._under_way.discard(key)
        if outcome.status != SUCCEEDED and disk.says_disk_full(outcome.reason):
            # the results disk or Docker's: not the experiment's failure; kept as interrupted
            outcome = Outcome(INTERRUPTED, outcome.reason, outcome.metadata)
            self.disk_full = self.disk_full or f"{key.label} attempt {attempt}: {outcome.reason}"
            self.stop_admitting.set()
        engine_lost = outcome.status == INTERRUPTED and engine.is_engine_error(outcome.reason)
        if engine_lost and not self.engine_down.is_set():
            # not the experiment's failure: the attempt is not counted; the scheduler waits for the engine
            self._engine_down_reason = f"{key.label} attempt {attempt}"
            self.engine_down.set()
        try:
            final = self._record(key, attempt, outcome)
        except Exception as exc:
            if not disk.is_disk_full(exc):
                raise
            # the journal's own disk is full: its transaction was rolled back, so the run still reads
            # "running" and a resume re-queues it (an interrupted attempt, not a failed one)
            self.disk_full = self.disk_full or f"journal: {exc}"
            self.stop_admitting.set()
            self.wake.set()
            return  # _record's own clean-up has released the run's reservation
        if self.on_finished is not None and final in journal.FINISHED:
            try:
                self.on_finished(key, outcome, final)
            except Exception:
                log.error("%s: after-run hooks failed\n%s", key.label, traceback.format_exc())
        self.wake.set()  # the batch may be complete now that the hooks are done

    def _record(self, key: RunKey, attempt: int, outcome: Outcome) -> str:
        """Commits the attempt's end to the journal; returns the run's status now."""
        final = outcome.status
        try:
            if outcome.status == LOST and self._lost_too_often(key):
                outcome = Outcome(FAILED, f"{outcome.reason} ({LOST_LIMIT} lost attempts in a row)")
                final = FAILED
            if outcome.status == SUCCEEDED:
                if not self.journal.commit_attempt(key, attempt):  # not the run's current attempt
                    log.warning("%s attempt %d: ended after it was given up: not counted", key.label, attempt)
                    final = self.journal.get(key).status
            elif outcome.status == INTERRUPTED:
                self.journal.interrupt(key, outcome.reason or "runner stopped")
            elif outcome.status == LOST:  # its node died: not the experiment's failure
                self.journal.lose_attempt(key, outcome.reason or "node lost")
                final = journal.PENDING
            else:
                reason = outcome.reason or "failed"
                last = self.journal.get(key).failures + 1 >= self.max_attempts
                if not last and self.before_retry is not None:
                    self.before_retry(key, attempt)
                final = self.journal.fail_attempt(key, reason, self.max_attempts)
            log.info(
                "%s attempt %d: %s%s",
                key.label,
                attempt,
                final,
                f" ({outcome.reason})" if outcome.reason else "",
            )
        finally:
            self.timeline.ends.append((clock.monotonic(), key))
            self.done.put(key)
            self.wake.set()
        return final

    def _lost_too_often(self, key: RunKey) -> bool:
        """A run whose last :data:`LOST_LIMIT` attempts all ended with their node (a node that loses
        every run it gets, e.g. its Docker engine is broken) counts a failed attempt, so no run is
        re-queued forever."""
        earlier = [o for _k, _a, _n, o in self.journal.attempts_of(key)][:-1]  # the last is this one
        recent = earlier[-(LOST_LIMIT - 1) :]
        return len(recent) == LOST_LIMIT - 1 and all(o == "lost" for o in recent)

    def _reap(self) -> None:
        while True:
            try:
                key = self.done.get_nowait()
            except queue.Empty:
                return
            self.placement.release(key)

    def run(self) -> bool:
        """Runs until no run is pending or running; False when stopped early."""
        last_reason: str | None = None
        while True:
            self.wake.clear()
            self._reap()
            for key in [k for k, t in self.workers.items() if not t.is_alive()]:
                self.workers.pop(key).join()
            if self.stop.is_set():
                break
            if self.engine_down.is_set():
                if self.workers:  # they notice the engine is gone on their next docker call
                    clock.wait(self.wake, 1.0)
                    continue
                if not self._outlast_engine_outage():
                    break
                continue
            pending = self.journal.runs(journal.PENDING)
            if not pending and not self.workers:
                return True
            if not pending and self.when_nothing_pending is not None:
                try:
                    self.when_nothing_pending()
                except Exception:  # never the batch's end: the group is released when it is over
                    log.error("scale-in failed\n%s", traceback.format_exc())
            if self.stop_admitting.is_set():
                if not self.workers:
                    break
                clock.wait(self.wake, 1.0)
                continue
            low = self.disk_check() if (pending and self.disk_check is not None) else None
            if low is not None:
                if low != last_reason:
                    log.warning("paused: %s", low)
                last_reason = low
                if not self.workers:  # nothing running will free space: end, resumable
                    self.disk_full = low
                    break
                clock.wait(self.wake, 1.0)
                continue
            if pending and self.admission_limit is not None:
                allowed = self.admission_limit(len(self.workers), len(pending))
                if allowed <= 0 and not self.workers:
                    self.cap_reached = f"the cost cap admits none of the {len(pending)} runs left"
                    break
                pending = pending[: max(0, allowed)]
            if pending:
                candidates = [Candidate(r.key, self.request_for(r.key)) for r in pending]
                decision = self.placement.decide(candidates)
                for reservation in decision.admitted:
                    if self.stop.is_set():
                        break
                    self._launch(reservation)
                if decision.held_back and decision.held_back != last_reason:
                    log.info("waiting: %s", decision.held_back)
                last_reason = decision.held_back
            clock.wait(self.wake, 1.0)
        self._drain()
        return False

    def _outlast_engine_outage(self) -> bool:
        """Every experiment has ended: waits for the engine, cleans up, re-queues what the outage
        interrupted. False when the engine stayed away (``engine_unavailable`` says so) or on stop."""
        log.warning(
            "docker engine unavailable since %s: nothing more is admitted; waiting up to %g s for it",
            self._engine_down_reason,
            self.engine_wait_seconds,
        )
        problem = self.engine_problem or (lambda: None)
        back, waited, last = wait_for_engine(problem, self.engine_wait_seconds, self.stop)
        if not back:
            if not self.stop.is_set():
                detail = (last or "").strip().splitlines()
                self.engine_unavailable = (
                    f"docker engine unavailable: no answer for {waited:.0f} s (engine_wait_seconds "
                    f"{self.engine_wait_seconds:g}): {detail[-1] if detail else 'no detail'}; start the "
                    "engine and resume the batch"
                )
            return False
        log.info("docker engine is back after %.0f s: removing this batch's leftovers by label", waited)
        if self.recover is not None:
            try:
                self.recover()
            except engine.DockerError as exc:
                if exc.engine_gone:  # gone again: wait again
                    self._engine_down_reason = "the clean-up after the outage"
                    return True
                raise
        requeued = self.journal.requeue_unfinished("interrupted by a Docker engine outage")
        if requeued:
            log.info(
                "re-queued %d runs interrupted by the engine outage: %s",
                len(requeued),
                ", ".join(k.label for k in requeued),
            )
        self.engine_down.clear()
        return True

    def _launch(self, reservation: Reservation) -> None:
        key = reservation.run
        assert isinstance(key, RunKey)
        cpuset = ";".join(admission.cpuset_arg(s) for s in reservation.cpusets if s)
        attempt = self.journal.start_attempt(key, cpuset)  # committed before any container exists
        self.placement.admit(reservation)
        self.peak_reserved_cpus = max(self.peak_reserved_cpus, self.placement.reserved_cpus)
        self.timeline.starts.append((clock.monotonic(), key))
        with self._under_way_lock:
            self._under_way.add(key)
        log.info("%s attempt %d: starting (cpuset %s)", key.label, attempt, cpuset or "-")
        thread = threading.Thread(target=self._worker, args=(key, reservation, attempt), name=key.label)
        self.workers[key] = thread
        thread.start()

    def _drain(self) -> None:
        for thread in list(self.workers.values()):
            thread.join()
        self._reap()
        self.workers.clear()
