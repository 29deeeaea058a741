"""One worker family per batch: a resumed batch whose workers are now of another family is refused.

CPU speed differs between machine families (n1, n2d, c3, ...), so runs of one comparison must not
mix them (docs/cluster.md, "Which family and region"). A `pulumi up` that changes
``workerMachineType`` to another family while a batch is under way rewrites the runner's settings on
the head; the batch would then go on on the new family. The runner refuses that before anything runs.

What the batch ran on, first found of:

1. its plan.json: the ``worker_group`` the stack wrote when the batch was planned (its
   ``machine_type``, written by stacks/config.py);
2. its runs: each run's metadata.json records the node's machine type and family
   (``host.machine_family``, remote_runner/experiment/provenance.py), for batches planned before (1) existed.

What the workers are now: the current settings' ``worker_group.machine_type``. Either unknown (a Ray
cluster that is not the stack's, or nothing ran yet): no check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remote_runner.cloud import pricing


def _family(machine_type: str) -> str:
    try:
        return pricing.family_of(machine_type)
    except ValueError:
        return machine_type.split("-", 1)[0]


def recorded_families(batch_dir: Path, planned: Mapping[str, Any]) -> tuple[str, str, str]:
    """(families, where they come from, the one machine type) of the batch's workers; "" where none
    is recorded. ``planned``: plan.json's settings."""
    group = planned.get("worker_group")
    machine_type = group.get("machine_type") if isinstance(group, Mapping) else None
    if isinstance(machine_type, str) and machine_type:
        return _family(machine_type), f"workerMachineType {machine_type} in its plan.json", machine_type
    seen: dict[str, str] = {}
    for meta in sorted(batch_dir.glob("*/*/run-*/metadata.json")):
        try:
            host = json.loads(meta.read_text(encoding="utf-8")).get("host") or {}
        except (OSError, ValueError, AttributeError):
            continue
        family = host.get("machine_family") if isinstance(host, Mapping) else None
        if isinstance(family, str) and family:
            seen.setdefault(family, str(host.get("machine_type") or family))
    if not seen:
        return "", "", ""
    kinds = sorted(seen.values())
    only = kinds[0] if len(kinds) == 1 else ""
    return ",".join(sorted(seen)), f"machine types its runs recorded: {', '.join(kinds)}", only


def worker_family_problem(
    batch_dir: Path, planned: Mapping[str, Any], current_machine_type: str
) -> str | None:
    """The problem line when the batch's recorded worker family differs from the current one."""
    if not current_machine_type:
        return None
    recorded, source, old = recorded_families(batch_dir, planned)
    current = _family(current_machine_type)
    if not recorded or recorded == current:
        return None
    set_back = (
        f"pulumi config set llamaresttest:workerMachineType {old}"
        if old
        else f"pulumi config set llamaresttest:workerMachineType <a {recorded} type>"
    )
    return (
        f"batch {batch_dir.name} ran on {recorded} workers ({source}); the workers are now "
        f"{current} ({current_machine_type}). A batch keeps one worker family (CPU speed differs "
        f"between families). Fix: start a new batch (a new `batch` name, or a new stack), or set the "
        f"old machine type back ({set_back}; pulumi up) and resume"
    )
