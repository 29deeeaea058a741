"""Machine sizes, their prices, and how many experiments fit on one.

Prices are us-central1 list prices in USD per hour (public catalogue; recheck before quoting them).
n1 prices scale linearly with size, so the 4-, 8- and 16-vCPU figures are the 32-vCPU ones scaled down.
n1-standard-4 fits no experiment with the default limits; it is the cluster head's size (docs/cluster.md).
Other regions cost a little more or less: ``hourlyCostUsd`` is an estimate, not a bill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# Memory kept back for the OS, dockerd, the runner and the page cache the models are read through.
HOST_MEMORY_RESERVE_GB = 4.0

# Each experiment runs two containers (the API under test and the testing tool) with the same limits.
CONTAINERS_PER_EXPERIMENT = 2


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_gb: float
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float

    def hourly_cost(self, *, spot: bool) -> float:
        return self.spot_usd_per_hour if spot else self.on_demand_usd_per_hour


MACHINE_TYPES: Mapping[str, MachineType] = MappingProxyType(
    {
        m.name: m
        for m in (
            MachineType("n1-standard-4", 4, 15.0, 0.19, 0.048125),
            MachineType("n1-standard-8", 8, 30.0, 0.38, 0.09625),
            MachineType("n1-standard-16", 16, 60.0, 0.76, 0.1925),
            MachineType("n1-standard-32", 32, 120.0, 1.52, 0.385),
            MachineType("n1-standard-64", 64, 240.0, 3.04, 0.770),
            MachineType("n1-standard-96", 96, 360.0, 4.56, 1.156),
        )
    }
)


def experiment_slots(
    machine: MachineType, cpus_per_container: float, memory_gb: float, min_free_cpus: float
) -> int:
    """How many experiments can run at once on ``machine``; 0 means not even one fits.

    The rule (the runner's admission gate reserves the same amounts, so this is an upper bound it
    actually reaches):

    - each experiment reserves ``2 * cpus_per_container`` vCPUs and ``2 * memory_gb`` GB (API and
      tool container);
    - ``HOST_MEMORY_RESERVE_GB`` (4 GB) stays with the host for the OS and Docker;
    - an experiment is only started while at least ``max(2 * cpus_per_container, min_free_cpus)``
      vCPUs are still unreserved, so with ``k`` experiments running the ``k+1``-th needs that many
      free; with the defaults (8 CPUs, 16 GB, 14 free) that is 16 CPUs and 32 GB per experiment:
      2 on n1-standard-32, 4 on n1-standard-64, 6 on n1-standard-96.

    Memory is never overcommitted (an OOM kill ruins a run); CPUs are not either, because the
    runner pins each experiment to its own cpuset.
    """
    if cpus_per_container <= 0 or memory_gb <= 0 or min_free_cpus < 0:
        raise ValueError("container limits must be positive and min_free_cpus non-negative")
    cpus_per_experiment = CONTAINERS_PER_EXPERIMENT * cpus_per_container
    needed_free = max(cpus_per_experiment, min_free_cpus)
    if machine.vcpus < needed_free:
        by_cpu = 0
    else:
        by_cpu = math.floor((machine.vcpus - needed_free) / cpus_per_experiment) + 1
    usable_memory = machine.memory_gb - HOST_MEMORY_RESERVE_GB
    by_memory = max(0, math.floor(usable_memory / (CONTAINERS_PER_EXPERIMENT * memory_gb)))
    return min(by_cpu, by_memory)


def experiment_needs(cpus_per_container: float, memory_gb: float, min_free_cpus: float) -> str:
    """What one experiment needs, in words, for error messages."""
    cpus = max(CONTAINERS_PER_EXPERIMENT * cpus_per_container, min_free_cpus)
    memory = CONTAINERS_PER_EXPERIMENT * memory_gb + HOST_MEMORY_RESERVE_GB
    return f"{cpus:g} vCPUs and {memory:g} GB (including {HOST_MEMORY_RESERVE_GB:g} GB kept for the host)"
