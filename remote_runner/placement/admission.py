"""Resource accounting for admission, as explicit data and pure functions.

The state is which CPUs and how much memory each running experiment holds (:class:`Ledger`).
:func:`decide` returns the runs to start now; :mod:`remote_runner.batch.scheduler` states the rules.
Nothing here reads the machine or the clock: the measurement is an argument.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

_EPS = 1e-9


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_bytes: int
    #: the CPU ids this process may use (its affinity); None means 0 .. cpus-1
    cpu_ids: tuple[int, ...] | None = None

    @property
    def ids(self) -> tuple[int, ...]:
        return self.cpu_ids if self.cpu_ids is not None else tuple(range(self.cpus))


@dataclass(frozen=True)
class Request:
    """What one experiment asks for: ``containers`` containers of ``cpus`` CPUs and ``memory_bytes`` each."""

    cpus: float
    memory_bytes: int
    containers: int = 2

    @property
    def pinned(self) -> bool:
        """Whole-CPU limits get concrete CPUs (``--cpuset-cpus``); fractional ones a ``--cpus`` quota."""
        return abs(self.cpus - round(self.cpus)) < _EPS and self.cpus >= 1

    @property
    def total_cpus(self) -> float:
        return self.cpus * self.containers

    @property
    def total_memory(self) -> int:
        return self.memory_bytes * self.containers


@dataclass(frozen=True)
class Reservation:
    run: Hashable
    request: Request
    #: one cpuset per container (empty tuples when the request is fractional)
    cpusets: tuple[tuple[int, ...], ...] = ()

    @property
    def cpus(self) -> float:
        return self.request.total_cpus

    @property
    def memory_bytes(self) -> int:
        return self.request.total_memory

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(c for s in self.cpusets for c in s)


@dataclass(frozen=True)
class Ledger:
    machine: Machine
    held: tuple[Reservation, ...] = ()

    @property
    def reserved_cpus(self) -> float:
        return sum(r.cpus for r in self.held)

    @property
    def reserved_memory(self) -> int:
        return sum(r.memory_bytes for r in self.held)

    @property
    def pinned_ids(self) -> frozenset[int]:
        return frozenset(c for r in self.held for c in r.cpu_ids)

    def add(self, reservation: Reservation) -> Ledger:
        return Ledger(self.machine, (*self.held, reservation))

    def release(self, run: Hashable) -> Ledger:
        return Ledger(self.machine, tuple(r for r in self.held if r.run != run))


@dataclass(frozen=True)
class Measurement:
    """What the machine says, sampled over an interval (never psutil's meaningless first call)."""

    free_cpus: float
    available_memory: int


@dataclass(frozen=True)
class Policy:
    min_free_cpus: float = 14.0


@dataclass(frozen=True)
class Candidate:
    run: Hashable
    request: Request


@dataclass(frozen=True)
class Decision:
    admitted: tuple[Reservation, ...]
    ledger: Ledger
    #: why the first candidate that did not start was held back (for the log), or None
    held_back: str | None = field(default=None)


def reserve(ledger: Ledger, candidate: Candidate) -> Reservation | None:
    """The reservation ``candidate`` would get now, or None when it does not fit the ledger."""
    req = candidate.request
    machine = ledger.machine
    if ledger.reserved_cpus + req.total_cpus > machine.cpus + _EPS:
        return None
    if ledger.reserved_memory + req.total_memory > machine.memory_bytes:
        return None
    if not req.pinned:
        return Reservation(candidate.run, req, tuple(() for _ in range(req.containers)))
    free = [c for c in machine.ids if c not in ledger.pinned_ids]
    per = round(req.cpus)
    if len(free) < per * req.containers:
        return None
    sets = tuple(tuple(free[i * per : (i + 1) * per]) for i in range(req.containers))
    return Reservation(candidate.run, req, sets)


def measured_ok(
    measurement: Measurement, admitted: Sequence[Reservation], req: Request, policy: Policy
) -> str | None:
    """None when the measurement agrees, else why not. Runs admitted earlier in the same decision are
    not visible in the measurement yet, so their reservations are subtracted from it."""
    free_cpus = measurement.free_cpus - sum(r.cpus for r in admitted)
    # min_free_cpus 0 switches the measured CPU gate off: measured minus admitted may go negative
    # while a just-started run is not yet visible in the measurement, and must not hold a run back.
    if policy.min_free_cpus > 0 and free_cpus + _EPS < policy.min_free_cpus:
        return f"measured free CPUs {free_cpus:.2f} < min_free_cpus {policy.min_free_cpus:g}"
    free_memory = measurement.available_memory - sum(r.memory_bytes for r in admitted)
    if free_memory < req.total_memory:
        return (
            f"available memory {free_memory / 1024**2:.0f} MiB < {req.total_memory / 1024**2:.0f} MiB needed"
        )
    return None


def decide(
    ledger: Ledger, pending: Sequence[Candidate], measurement: Measurement, policy: Policy
) -> Decision:
    """First fit over ``pending`` (already in plan order): admit every candidate whose reservation fits
    the ledger and which the measurement agrees with, in order."""
    admitted: list[Reservation] = []
    held_back: str | None = None
    for candidate in pending:
        reservation = reserve(ledger, candidate)
        if reservation is None:
            held_back = held_back or "reservations full"
            continue
        why_not = measured_ok(measurement, admitted, candidate.request, policy)
        if why_not is not None:
            held_back = held_back or why_not
            continue
        admitted.append(reservation)
        ledger = ledger.add(reservation)
    return Decision(tuple(admitted), ledger, held_back)


def cpuset_arg(cpus: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"`` for ``--cpuset-cpus``."""
    parts: list[str] = []
    ordered = sorted(cpus)
    start = prev = ordered[0] if ordered else 0
    for c in ordered[1:]:
        if c == prev + 1:
            prev = c
            continue
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
        start = prev = c
    if ordered:
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ",".join(parts)
