"""Machine sizes, families, prices per region and the experiment packing rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remote_runner.cloud import price_table, pricing
from stacks.machines import (
    HOST_MEMORY_RESERVE_GB,
    MACHINE_TYPES,
    MachineType,
    experiment_slots,
    hourly_cost_in,
)


# us-central1 figures of the catalogue copy the table was built from (remote_runner/cloud/price_table.py):
# the old hand-kept table rounded them (1.52, 0.385, 3.04, 0.770, 4.56, 1.156); n1-standard-32 is
# n1-standard-96 scaled by a third (the catalogue prices n1 per vCPU and GB).
@pytest.mark.parametrize(
    ("name", "vcpus", "memory", "on_demand", "spot", "slots"),
    [
        ("n1-standard-32", 32, 120, 1.51999, 0.3852, 2),
        ("n1-standard-64", 64, 240, 3.03998, 0.7704, 4),
        ("n1-standard-96", 96, 360, 4.55998, 1.1556, 6),
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


# Family by family: vCPUs, memory (n1 3.75 GB per vCPU, the others 4), us-central1 on demand / spot
# (REFERENCE.md's third round quotes the same catalogue: n2d-standard-32 1.352/0.2805, n2-standard-32
# 1.554/0.4442, c3-standard-44 2.218/0.3466, c3-standard-88 4.435/0.6933, e2-standard-16 0.536/0.2143),
# and experiments at once with the default limits (8 CPUs, 16 GB, 14 free).
@pytest.mark.parametrize(
    ("name", "family", "vcpus", "memory", "on_demand", "spot", "slots"),
    [
        ("n2d-standard-32", "n2d", 32, 128, 1.35187, 0.28051, 2),
        ("n2d-standard-96", "n2d", 96, 384, 4.05556, 0.84153, 6),
        ("n2-standard-32", "n2", 32, 128, 1.55389, 0.44416, 2),
        ("c3-standard-44", "c3", 44, 176, 2.21769, 0.34663, 2),
        ("c3-standard-88", "c3", 88, 352, 4.43538, 0.69326, 5),
        ("e2-standard-16", "e2", 16, 64, 0.5361, 0.21434, 1),
        ("e2-standard-4", "e2", 4, 16, 0.13403, 0.05359, 0),
        ("n1-standard-4", "n1", 4, 15, 0.19, 0.04815, 0),
    ],
)
def test_families_sizes_prices_and_slots(
    name: str, family: str, vcpus: int, memory: float, on_demand: float, spot: float, slots: int
) -> None:
    machine = MACHINE_TYPES[name]
    assert (machine.family, machine.vcpus, machine.memory_gb) == (family, vcpus, memory)
    assert machine.hourly_cost(spot=False) == pytest.approx(on_demand, abs=1e-4)
    assert machine.hourly_cost(spot=True) == pytest.approx(spot, abs=1e-4)
    assert experiment_slots(machine, 8, 16, 14) == slots


def test_regions_differ_and_the_cheapest_spot_slot_hour_is_n2d_in_us_east5() -> None:
    n2d = MACHINE_TYPES["n2d-standard-32"]
    # REFERENCE.md: n2d-standard-32 spot 0.195 USD/h in us-east5 vs 0.281 in us-central1.
    assert hourly_cost_in(n2d, "us-east5", spot=True) == pytest.approx(0.19469)
    assert hourly_cost_in(n2d, "us-central1", spot=True) == pytest.approx(0.28051)
    per_slot = {
        (m.name, region): hourly_cost_in(m, region, spot=True) / experiment_slots(m, 8, 16, 14)
        for m in MACHINE_TYPES.values()
        if experiment_slots(m, 8, 16, 14)
        for region in ("us-central1", "us-east5")
        if region in pricing.regions_of(m.name)
    }
    cheapest = min(per_slot, key=per_slot.__getitem__)
    assert cheapest[0].startswith("n2d-") and cheapest[1] == "us-east5"
    # n1 is the dearest family per spot slot-hour in us-central1 among those the issue compares.
    assert per_slot[("n1-standard-32", "us-central1")] > per_slot[("n2d-standard-32", "us-central1")]
    assert per_slot[("n1-standard-32", "us-central1")] > per_slot[("c3-standard-88", "us-central1")]


def test_unknown_types_and_regions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown machine type 'n3-standard-8'; known: n1-standard-4, "):
        pricing.hourly_usd("n3-standard-8", "us-central1", spot=True)
    # Google offers no n1 in us-east5: the catalogue has no row, the table no price.
    with pytest.raises(
        ValueError, match=r"no price for n1-standard-32 in 'us-east5'.* europe-west4, us-central1"
    ):
        pricing.hourly_usd("n1-standard-32", "us-east5", spot=True)
    with pytest.raises(ValueError, match="families: n1, e2, n2, n2d, c3"):
        pricing.family_of("m5-large")


def test_the_table_states_its_source_and_date_and_marks_derived_figures() -> None:
    assert "skypilot-org/skypilot-catalog" in pricing.SOURCE and "vms.csv" in pricing.SOURCE
    assert pricing.PRICES_AS_OF.isoformat() == "2026-12-07"
    # a size the catalogue copy had a row for, and one scaled from another size of its shape
    assert price_table.PRICES[("n2d-standard-32", "us-east5")][4] is None
    assert price_table.PRICES[("n2d-standard-96", "us-east5")][4] == "n2d-standard-224"
    assert {pricing.family_of(name) for name, _ in price_table.PRICES} == set(pricing.FAMILIES)
    assert pricing.zones_of("c3-standard-88", "us-east5") == ("us-east5-b", "us-east5-c")
