"""Machine sizes, prices and the experiment packing rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacks.machines import HOST_MEMORY_RESERVE_GB, MACHINE_TYPES, MachineType, experiment_slots


@pytest.mark.parametrize(
    ("name", "vcpus", "memory", "on_demand", "spot", "slots"),
    [
        ("n1-standard-32", 32, 120, 1.52, 0.385, 2),
        ("n1-standard-64", 64, 240, 3.04, 0.770, 4),
        ("n1-standard-96", 96, 360, 4.56, 1.156, 6),
    ],
)
def test_guide_sizes_prices_and_slots_with_default_limits(
    name: str, vcpus: int, memory: float, on_demand: float, spot: float, slots: int
) -> None:
    machine = MACHINE_TYPES[name]
    assert (machine.vcpus, machine.memory_gb) == (vcpus, memory)
    assert machine.hourly_cost(spot=False) == pytest.approx(on_demand)
    assert machine.hourly_cost(spot=True) == pytest.approx(spot)
    assert experiment_slots(machine, 8, 16, 14) == slots


def test_memory_can_be_the_limit() -> None:
    machine = MACHINE_TYPES["n1-standard-32"]
    # 4 CPUs per container would allow 4 by CPU, but 2 x 32 GB per experiment only fits once in 116 GB.
    assert experiment_slots(machine, 4, 32, 0) == 1
    assert experiment_slots(machine, 4, 28, 0) == 2  # 2 x 56 GB = 112 <= 116


def test_min_free_cpus_above_one_experiments_share_costs_a_slot() -> None:
    machine = MACHINE_TYPES["n1-standard-32"]
    assert experiment_slots(machine, 8, 16, 16) == 2
    assert experiment_slots(machine, 8, 16, 17) == 1  # the second would start with only 16 free
    assert experiment_slots(machine, 8, 16, 33) == 0


def test_too_small_is_zero_and_fractional_limits_work() -> None:
    small = MACHINE_TYPES["n1-standard-8"]
    assert experiment_slots(small, 8, 16, 14) == 0
    assert experiment_slots(small, 0.5, 0.25, 0) == 8


def test_nonsense_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        experiment_slots(MACHINE_TYPES["n1-standard-32"], 0, 16, 14)


@given(
    vcpus=st.integers(1, 224),
    memory=st.floats(1, 1024),
    cpus=st.floats(0.25, 64),
    mem=st.floats(0.25, 256),
    min_free=st.floats(0, 64),
)
def test_slots_never_overcommit(vcpus: int, memory: float, cpus: float, mem: float, min_free: float) -> None:
    machine = MachineType("m", vcpus, memory, 1.0, 0.3)
    slots = experiment_slots(machine, cpus, mem, min_free)
    assert slots >= 0
    assert slots * 2 * cpus <= vcpus + 1e-9
    assert slots * 2 * mem <= max(0.0, memory - HOST_MEMORY_RESERVE_GB) + 1e-9
    if slots:
        # The last experiment admitted still had its share and the required free CPUs.
        assert vcpus - (slots - 1) * 2 * cpus >= max(2 * cpus, min_free) - 1e-9
    # One more would not fit by CPU or by memory.
    more = slots + 1
    assert (
        # the tolerance on the side of "it would not fit": 1 vCPU is not 2 x 0.25000000000000006
        vcpus - slots * 2 * cpus < max(2 * cpus, min_free) + 1e-9
        or more * 2 * mem > memory - HOST_MEMORY_RESERVE_GB + 1e-9
    )
