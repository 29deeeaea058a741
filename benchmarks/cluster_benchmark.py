"""Cluster benchmark (a script, not a test): one synthetic matrix, scheduled by our scheduler on one
machine (LocalPlacement) and on a real local Ray cluster (RayPlacement), one after the other in one run.

The matrix: ``--runs`` experiments of seeded random lengths between ``--min`` and ``--max`` seconds.
Both placements get the same room: 3 experiments at once (the cluster of tests/cluster/conftest.py:
a head with no slot, a worker with 2 slots and one with 1; the machine: 6 CPUs, experiments of 2 x 1
CPU). An experiment is synthetic, a sleep of its length, so what is measured is placement alone:
on the cluster, each one is a Ray task on a worker node that goes through the node's side of an attempt
(its cpuset ledger, the orphan check, the folder handed back), timed on the node.

Printed for each: makespan / lower bound, where the lower bound is max(total length / slots, longest
job); the delay from the batch's start to the first start; and the median refill delay, from the end
that freed a slot to the next start while runs were waiting.

    PATH=/usr/bin:$PATH .venv/bin/python benchmarks/cluster_benchmark.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_runner import journal, plan
from remote_runner.admission import Machine, Measurement, Policy, Request, Reservation
from remote_runner.experiment import SUCCEEDED, ExperimentSpec, Outcome
from remote_runner.plan import RunKey
from remote_runner.scheduler import Scheduler

SLOTS = 3
REQUEST = Request(0.5, 64 * 1024**2)  # fits the test cluster's workers: 2 on "big", 1 on "small"
LOCAL_REQUEST = Request(1.0, 64 * 1024**2)  # 2 CPUs per experiment on a 6-CPU machine: 3 at once


def synthetic(spec: Any, _docker: Any, stop: threading.Event) -> Outcome:
    """The node's experiment: sleeps the run's length (its budget) and says when, on the node."""
    begin = time.time()
    stop.wait(spec.budget_seconds)
    return Outcome(SUCCEEDED, None, {"start": begin, "end": time.time()})


def lengths(runs: int, low: float, high: float, seed: int) -> dict[RunKey, float]:
    rng = random.Random(seed)  # noqa: S311  (a seeded synthetic matrix, not a secret)
    keys = plan.expand(("bench",), ("synthetic",), runs)
    return {k: round(rng.uniform(low, high), 2) for k in keys}


def _scheduler(folder: Path, keys: list[RunKey], placement: Any, request: Request, spans: dict) -> Scheduler:
    jour = journal.Journal(folder / "journal.sqlite")
    jour.add_runs(keys)

    def on_finished(key: RunKey, outcome: Outcome, _final: str) -> None:
        spans[key] = (outcome.metadata["start"], outcome.metadata["end"])

    return Scheduler(
        jour=jour,
        request_for=lambda _k: request,
        max_attempts=1,
        stop=threading.Event(),
        placement=placement,
        on_finished=on_finished,
    )


def run_local(jobs: dict[RunKey, float], folder: Path) -> tuple[float, dict]:
    from remote_runner.placement import LocalPlacement

    def start(key: RunKey, _r: Reservation, _a: int) -> Outcome:
        begin = time.time()
        time.sleep(jobs[key])
        return Outcome(SUCCEEDED, None, {"start": begin, "end": time.time()})

    placement = LocalPlacement(
        Machine(2 * SLOTS, 64 * 1024**3),
        Policy(min_free_cpus=0),
        lambda: Measurement(free_cpus=64.0, available_memory=64 * 1024**3),
        start,
    )
    spans: dict = {}
    begin = time.time()
    _scheduler(folder, list(jobs), placement, LOCAL_REQUEST, spans).run()
    return begin, spans


def run_ray(jobs: dict[RunKey, float], folder: Path, address: str) -> tuple[float, dict]:
    from remote_runner import cluster
    from remote_runner.catalog import Api, Tool

    cluster.connect(address)

    spec_file = folder / "spec.json"
    spec_file.write_text("{}", encoding="utf-8")

    def payload_for(key: RunKey, attempt: int) -> cluster.AttemptPayload:
        spec = ExperimentSpec(
            batch=folder.name,
            batch_id="benchmark0000",
            key=key,
            attempt=attempt,
            run_dir=folder / key.rel_dir,
            api=Api(name=key.api, folder=folder, spec=spec_file.name),
            tool=Tool(name=key.tool, folder=folder),
            budget_seconds=jobs[key],
            cpus=REQUEST.cpus,
            api_cpuset=None,
            tool_cpuset=None,
            memory_bytes=REQUEST.memory_bytes,
            spec_file=spec_file,
        )
        return cluster.AttemptPayload(
            spec=spec, driver="benchmark", spec_bytes=b"{}", tool_spec_bytes=b"{}", experiment=synthetic
        )

    placement = cluster.RayPlacement(
        REQUEST, payload_for, run_dir_for=lambda k: folder / k.rel_dir, stop=threading.Event()
    )
    assert cluster.capacity(placement.nodes(fresh=True), REQUEST) == SLOTS, placement.nodes()
    spans: dict = {}
    begin = time.time()
    _scheduler(folder, list(jobs), placement, REQUEST, spans).run()
    return begin, spans


def figures(jobs: dict[RunKey, float], begin: float, spans: dict) -> dict[str, float]:
    assert len(spans) == len(jobs), f"{len(spans)} of {len(jobs)} runs finished"
    starts = sorted(s for s, _ in spans.values())
    ends = sorted(e for _, e in spans.values())
    makespan = ends[-1] - begin
    bound = max(sum(jobs.values()) / SLOTS, max(jobs.values()))
    refill = [starts[i] - ends[i - SLOTS] for i in range(SLOTS, len(starts))]
    return {
        "makespan_s": makespan,
        "lower_bound_s": bound,
        "ratio": makespan / bound,
        "first_start_s": starts[0] - begin,
        "refill_median_s": statistics.median(refill) if refill else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--address", help="an existing Ray cluster of that shape (default: start one here)")
    args = parser.parse_args()
    jobs = lengths(args.runs, args.min, args.max, args.seed)
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        root = Path(tmp)
        env = None
        address = args.address
        if address is None:
            from tests.cluster.conftest import cluster_env, start_cluster

            env = cluster_env(root / "scratch")
            started = time.monotonic()
            address = start_cluster(env).address
            print(f"local Ray cluster (head + 2 workers) up in {time.monotonic() - started:.1f} s")
        try:
            (root / "local").mkdir()
            local = figures(jobs, *run_local(jobs, root / "local"))
            (root / "ray").mkdir()
            ray_figures = figures(jobs, *run_ray(jobs, root / "ray", address))
        finally:
            if env is not None:
                from tests.cluster.conftest import stop_all

                stop_all(env)
    print(
        f"{len(jobs)} runs of {args.min:g}-{args.max:g} s (total {sum(jobs.values()):.1f} s), {SLOTS} at once"
    )
    print(f"{'placement':<14}{'makespan':>10}{'bound':>8}{'ratio':>8}{'1st start':>11}{'refill':>9}")
    for name, f in (("one machine", local), ("ray cluster", ray_figures)):
        print(
            f"{name:<14}{f['makespan_s']:>9.2f}s{f['lower_bound_s']:>7.2f}s{f['ratio']:>8.3f}"
            f"{f['first_start_s']:>10.2f}s{f['refill_median_s']:>8.2f}s"
        )
    print(f"ray / one machine makespan: {ray_figures['makespan_s'] / local['makespan_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
