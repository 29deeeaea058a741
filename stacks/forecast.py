"""The cluster stack's ``forecast`` output: the batch it deploys, forecast before anything bills.

The same model as ``python -m remote_runner forecast`` (remote_runner/batch/forecast.py), fed with what the
stack knows: the runner settings it writes (APIs x tools x runs x budget, the container limits that
give each worker its slots), ``workers``, the two machine types, ``workerSpot``, the region and the
disk size. At :data:`remote_runner.batch.forecast.STACK_RATE` (2 % preemptions per VM-hour) and the model's
default assumptions; the command sweeps the rates and takes overrides (docs/cluster.md, "Forecast").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from remote_runner.batch import forecast
from stacks.config import StackConfig


def stack_forecast(cfg: StackConfig) -> dict[str, Any]:
    """p50/p95 hours and USD of the stack's batch at 2 %/h (JSON-ready, for ``pulumi stack output``)."""
    assert cfg.worker_machine is not None and cfg.head_machine is not None  # build_config sets them
    batch = forecast.Batch(
        runs=len(cfg.apis) * len(cfg.tools) * cfg.runs_per_combination,
        budget_minutes=float(cfg.time_budget_minutes),
        slots=cfg.worker_slots,
    )
    cluster = forecast.Cluster(
        cfg.workers, cfg.worker_machine.name, cfg.head_machine.name, cfg.region, cfg.worker_spot
    )
    assumptions = replace(forecast.Assumptions(), disk_gb=float(cfg.disk_size_gb))
    if cfg.bake_worker_image:  # workers boot the baked image; the head's start waits for the bake
        assumptions = forecast.baked(assumptions)
    (result,) = forecast.forecast(batch, cluster, assumptions, (forecast.STACK_RATE,)).results
    return {
        "runs": batch.runs,
        "preemptionRatePerHour": result.rate_per_hour,
        "hoursP50": round(result.makespan_hours_p50, 2),
        "hoursP95": round(result.makespan_hours_p95, 2),
        "usdP50": round(result.cost_usd_p50, 2),
        "usdP95": round(result.cost_usd_p95, 2),
        "bakedWorkerImage": cfg.bake_worker_image,
        "more": "python -m remote_runner forecast --config experiment.json (docs/cluster.md, Forecast)",
    }
