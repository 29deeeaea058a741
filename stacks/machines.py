"""Machine types the stack accepts, their prices, and how many experiments fit on one.

Built on the runner's price table (remote_runner/cloud/pricing.py, generated from Google's SKU catalogue as
copied by skypilot-org/skypilot-catalog; its source and date are ``pricing.SOURCE`` and
``pricing.PRICES_AS_OF``), so the stack and the head read the same figures. The families are n1, n2,
n2d, c3 and e2 (docs/cluster.md, "Which family and region"). ``MachineType``'s two prices are those of
:data:`REFERENCE_REGION`; what a stack costs in its own region is :func:`hourly_cost_in`.
n1-standard-4 and e2-standard-4 fit no experiment with the default limits; they are head sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from remote_runner.cloud import pricing
from remote_runner.cloud.pricing import CONTAINERS_PER_EXPERIMENT, HOST_MEMORY_RESERVE_GB, family_of

__all__ = [
    "CONTAINERS_PER_EXPERIMENT",
    "HOST_MEMORY_RESERVE_GB",
    "MACHINE_TYPES",
    "REFERENCE_REGION",
    "MachineType",
    "experiment_needs",
    "experiment_slots",
    "family_of",
    "hourly_cost_in",
]

#: the region whose prices ``MachineType`` carries: Google's usual reference, where every family is offered
REFERENCE_REGION = "us-central1"


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_gb: float
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float

    def hourly_cost(self, *, spot: bool) -> float:
        """The price in :data:`REFERENCE_REGION` (0 for a machine that is not in the table)."""
        return self.spot_usd_per_hour if spot else self.on_demand_usd_per_hour

    @property
    def family(self) -> str:
        return family_of(self.name)


MACHINE_TYPES: Mapping[str, MachineType] = MappingProxyType(
    {
        m.name: MachineType(
            m.name,
            m.vcpus,
            m.memory_gb,
            pricing.hourly_usd(m.name, REFERENCE_REGION, spot=False),
            pricing.hourly_usd(m.name, REFERENCE_REGION, spot=True),
        )
        for m in pricing.MACHINES.values()
    }
)


def hourly_cost_in(machine: MachineType, region: str, *, spot: bool) -> float:
    """The list price of ``machine`` in ``region`` (ValueError when the table has none there)."""
    return pricing.hourly_usd(machine.name, region, spot=spot)


def experiment_slots(
    machine: MachineType, cpus_per_container: float, memory_gb: float, min_free_cpus: float
) -> int:
    """How many experiments can run at once on ``machine``; 0 means not even one fits.

    The rule is :func:`remote_runner.cloud.pricing.experiment_slots` (the same for every family; the
    family's memory per vCPU makes the difference): with the defaults (8 CPUs, 16 GB, 14 free) 2 on a
    32-vCPU machine, 4 on a 64-vCPU one, 5 on c3-standard-88, 6 on a 96-vCPU one.
    """
    return pricing.experiment_slots(
        machine.vcpus, machine.memory_gb, cpus_per_container, memory_gb, min_free_cpus
    )


def experiment_needs(cpus_per_container: float, memory_gb: float, min_free_cpus: float) -> str:
    """What one experiment needs, in words, for error messages."""
    cpus = max(CONTAINERS_PER_EXPERIMENT * cpus_per_container, min_free_cpus)
    memory = CONTAINERS_PER_EXPERIMENT * memory_gb + HOST_MEMORY_RESERVE_GB
    return f"{cpus:g} vCPUs and {memory:g} GB (including {HOST_MEMORY_RESERVE_GB:g} GB kept for the host)"
