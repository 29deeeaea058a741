"""Placement: which pending run starts now, and where. The batch (plan, journal, hooks, finish, upload,
power-off: :mod:`remote_runner.batch.driver`) is the same whichever placement decides.

Two implementations of one small interface:

- :class:`LocalPlacement`: today's admission on one machine (:mod:`remote_runner.placement.admission`: a
  ledger of reserved CPUs and memory, concrete cpusets, and the machine's measurement);
- :class:`remote_runner.placement.cluster.RayPlacement`: the runs go to the nodes of a Ray cluster, one Ray
  task per attempt; the node takes its own cpuset ledger.

The scheduler calls :meth:`Placement.decide` with the pending runs in plan order, :meth:`admit` for
each reservation it launches, :meth:`start` in the attempt's own thread (it blocks until the attempt
ended), and :meth:`release` once the attempt's end is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from remote_runner.experiment.lifecycle import Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement import admission
from remote_runner.placement.admission import (
    Candidate,
    Decision,
    Ledger,
    Machine,
    Measurement,
    Policy,
    Reservation,
)

#: an attempt ended with its node (cluster mode): re-queued at once, not counted as a failed attempt
LOST = "lost"

StartFn = Callable[[RunKey, Reservation, int], Outcome]


class Placement(Protocol):
    def decide(self, pending: Sequence[Candidate]) -> Decision:
        """The reservations to launch now, first fit in the order given, and why the first run that
        did not start was held back (for the log)."""
        ...

    def admit(self, reservation: Reservation) -> None:
        """The scheduler launches ``reservation`` (the journal says so already)."""
        ...

    def start(self, key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
        """Runs the attempt where it was placed; blocks until it ended."""
        ...

    def release(self, run: Hashable) -> None:
        """The attempt's end is recorded: its resources are free again."""
        ...

    @property
    def reserved_cpus(self) -> float:
        """CPUs held by running attempts now (for the benchmark's peak)."""
        ...


class LocalPlacement:
    """One machine: the ledger of :mod:`remote_runner.placement.admission` and the sampler's measurement."""

    def __init__(
        self, machine: Machine, policy: Policy, measure: Callable[[], Measurement], start: StartFn
    ) -> None:
        self.ledger = Ledger(machine)
        self.policy = policy
        self.measure = measure
        self._start = start

    def decide(self, pending: Sequence[Candidate]) -> Decision:
        return admission.decide(self.ledger, pending, self.measure(), self.policy)

    def admit(self, reservation: Reservation) -> None:
        self.ledger = self.ledger.add(reservation)

    def start(self, key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
        return self._start(key, reservation, attempt)

    def release(self, run: Hashable) -> None:
        self.ledger = self.ledger.release(run)

    @property
    def reserved_cpus(self) -> float:
        return self.ledger.reserved_cpus
