"""Admission accounting as pure functions: examples plus properties (no overcommit, no CPU held twice,
first-fit order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from remote_runner.placement.admission import (
    Candidate,
    Ledger,
    Machine,
    Measurement,
    Policy,
    Request,
    cpuset_arg,
    decide,
    reserve,
)

GIB = 1024**3
IDLE = Measurement(free_cpus=1e9, available_memory=10**15)
NO_GATE = Policy(min_free_cpus=0)


def test_whole_cpus_get_disjoint_concrete_cpusets_lowest_first():
    ledger = Ledger(Machine(cpus=32, memory_bytes=120 * GIB))
    req = Request(cpus=8, memory_bytes=16 * GIB)
    decision = decide(ledger, [Candidate(i, req) for i in range(3)], IDLE, NO_GATE)
    assert [r.run for r in decision.admitted] == [0, 1]  # a third needs 16 more CPUs
    assert decision.admitted[0].cpusets == (tuple(range(0, 8)), tuple(range(8, 16)))
    assert decision.admitted[1].cpusets == (tuple(range(16, 24)), tuple(range(24, 32)))
    assert decision.held_back == "reservations full"


def test_released_cpus_are_reused():
    ledger = Ledger(Machine(cpus=4, memory_bytes=8 * GIB))
    req = Request(cpus=1, memory_bytes=GIB)
    first = decide(ledger, [Candidate("a", req), Candidate("b", req)], IDLE, NO_GATE).ledger
    freed = first.release("a")
    again = reserve(freed, Candidate("c", req))
    assert again is not None and again.cpu_ids == frozenset({0, 1})


def test_fractional_limits_get_a_quota_and_no_cpuset():
    req = Request(cpus=0.5, memory_bytes=GIB)
    assert not req.pinned and Request(cpus=2, memory_bytes=GIB).pinned
    res = reserve(Ledger(Machine(2, 8 * GIB)), Candidate("x", req))
    assert res is not None and res.cpusets == ((), ()) and res.cpus == 1.0


def test_memory_is_reserved_too():
    ledger = Ledger(Machine(cpus=64, memory_bytes=40 * GIB))
    req = Request(cpus=1, memory_bytes=16 * GIB)
    assert [r.run for r in decide(ledger, [Candidate(i, req) for i in range(3)], IDLE, NO_GATE).admitted] == [
        0
    ]


def test_measurement_must_agree_and_counts_what_this_pass_admitted():
    ledger = Ledger(Machine(cpus=64, memory_bytes=500 * GIB))
    req = Request(cpus=8, memory_bytes=16 * GIB)
    cands = [Candidate(i, req) for i in range(4)]
    busy = decide(ledger, cands, Measurement(free_cpus=10, available_memory=500 * GIB), Policy(14))
    assert busy.admitted == () and busy.held_back is not None and "measured free CPUs 10.00" in busy.held_back
    # 40 measured free: the first leaves 24, the second 8 (< 14): only two start in this pass
    two = decide(ledger, cands, Measurement(free_cpus=40, available_memory=500 * GIB), Policy(14))
    assert [r.run for r in two.admitted] == [0, 1]
    low_memory = decide(ledger, cands, Measurement(free_cpus=64, available_memory=40 * GIB), Policy(0))
    assert [r.run for r in low_memory.admitted] == [0]  # 32 GiB each; 40 GiB available


def test_min_free_cpus_0_switches_the_measured_cpu_gate_off():
    ledger = Ledger(Machine(cpus=2, memory_bytes=8 * GIB))
    req = Request(cpus=0.25, memory_bytes=64 * 1024**2)
    cands = [Candidate(i, req) for i in range(4)]
    # a busy machine (0.1 CPUs measured free): the second run of the pass would make it negative
    off = decide(ledger, cands, Measurement(free_cpus=0.1, available_memory=8 * GIB), Policy(0))
    assert [r.run for r in off.admitted] == [0, 1, 2, 3] and off.held_back is None
    on = decide(ledger, cands, Measurement(free_cpus=0.1, available_memory=8 * GIB), Policy(0.5))
    assert on.admitted == () and on.held_back is not None


def test_first_fit_skips_what_does_not_fit_and_takes_a_later_smaller_run():
    ledger = Ledger(Machine(cpus=4, memory_bytes=64 * GIB))
    big, small = Request(cpus=2, memory_bytes=GIB), Request(cpus=0.5, memory_bytes=GIB)
    ledger = decide(ledger, [Candidate("first", Request(cpus=1, memory_bytes=GIB))], IDLE, NO_GATE).ledger
    decision = decide(ledger, [Candidate("big", big), Candidate("small", small)], IDLE, NO_GATE)
    assert [r.run for r in decision.admitted] == ["small"]


def test_cpuset_arg():
    assert cpuset_arg((0, 1, 2, 5)) == "0-2,5"
    assert cpuset_arg((7,)) == "7"
    assert cpuset_arg((3, 1, 2, 9, 10)) == "1-3,9-10"


requests = st.builds(
    Request,
    cpus=st.sampled_from([0.25, 0.5, 1, 1.5, 2, 3, 4, 8]),
    memory_bytes=st.sampled_from([GIB // 4, GIB, 4 * GIB, 16 * GIB]),
    containers=st.integers(1, 2),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.lists(requests, min_size=1, max_size=6)),
        st.tuples(st.just("release"), st.integers(0, 50)),
    ),
    max_size=30,
)


def check_invariants(ledger: Ledger) -> None:
    m = ledger.machine
    assert ledger.reserved_cpus <= m.cpus + 1e-9, "CPU overcommit"
    assert ledger.reserved_memory <= m.memory_bytes, "memory overcommit"
    seen: set[int] = set()
    for r in ledger.held:
        ids = [c for s in r.cpusets for c in s]
        assert len(ids) == len(set(ids)), "a CPU given twice within one run"
        assert not seen & set(ids), "a CPU given to two runs"
        seen |= set(ids)
        assert all(0 <= c < m.cpus for c in ids)
        if r.request.pinned:
            assert [len(s) for s in r.cpusets] == [round(r.request.cpus)] * r.request.containers
        else:
            assert all(s == () for s in r.cpusets)


@settings(max_examples=300, deadline=None)
@given(cpus=st.integers(1, 96), memory_gib=st.integers(1, 360), operations=ops)
def test_no_overcommit_and_no_cpu_held_twice(cpus, memory_gib, operations):
    ledger = Ledger(Machine(cpus, memory_gib * GIB))
    next_id = 0
    for op, arg in operations:
        if op == "admit":
            cands = []
            for req in arg:  # type: ignore[union-attr]
                cands.append(Candidate(next_id, req))
                next_id += 1
            ledger = decide(ledger, cands, IDLE, NO_GATE).ledger
        elif ledger.held:
            ledger = ledger.release(ledger.held[int(arg) % len(ledger.held)].run)  # type: ignore[call-overload]
        check_invariants(ledger)


@settings(max_examples=200, deadline=None)
@given(cpus=st.integers(1, 64), req=requests, n=st.integers(0, 20), running=st.integers(0, 5))
def test_uniform_runs_start_in_plan_order(cpus, req, n, running):
    """With equal requests, first fit admits a prefix of the pending list: never a later run before
    an earlier one (which keeps the interleaved repetition order)."""
    ledger = Ledger(Machine(cpus, 10**15))
    for i in range(running):
        res = reserve(ledger, Candidate(f"r{i}", req))
        if res is not None:
            ledger = ledger.add(res)
    pending = [Candidate(i, req) for i in range(n)]
    admitted = [r.run for r in decide(ledger, pending, IDLE, NO_GATE).admitted]
    assert admitted == list(range(len(admitted)))
    # maximal: the next one really did not fit
    after = decide(ledger, pending, IDLE, NO_GATE).ledger
    if len(admitted) < n:
        assert reserve(after, pending[len(admitted)]) is None


def test_pinned_cpus_come_from_the_machines_own_cpu_ids():
    """A runner restricted to some CPUs (affinity 4-7) pins experiments to those only."""
    ledger = Ledger(Machine(cpus=4, memory_bytes=8 * GIB, cpu_ids=(4, 5, 6, 7)))
    res = reserve(ledger, Candidate("x", Request(cpus=2, memory_bytes=GIB)))
    assert res is not None and res.cpusets == ((4, 5), (6, 7))
    assert reserve(ledger.add(res), Candidate("y", Request(cpus=1, memory_bytes=GIB))) is None
