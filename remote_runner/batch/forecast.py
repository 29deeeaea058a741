"""A forecast before spending: wall-clock and cost of a cluster batch, from a Monte Carlo model of what
this program does (docs/cluster.md, "Forecast").

The model, one simulated batch at a time (every duration a named field of :class:`Assumptions`):

1. ``t = 0`` is ``pulumi up``: the head (on demand, billed from here to the end) boots
   (``head_boot_minutes``), builds every image and pushes it to the registry (``image_build_minutes``).
2. Only then is the worker group resized from 0 to ``workers``: each worker is billed from its
   request and joins Ray after ``worker_boot_minutes`` (each boot drawn uniformly within
   ``boot_jitter`` of it).
3. The preflight starts when the first worker joins: one smoke run per API, all in parallel on the
   workers (``preflight_minutes``). No real run starts before it ends.
4. A run holds one slot for ``budget + run_overhead_minutes``; a free slot takes the next pending
   run (waves of ``workers x slots``). The runs are alike, so their order does not matter.
5. Spot preemption: each spot worker is reclaimed after an exponential time with the given rate per
   VM-hour (a constant rate: Google publishes none, and measured ones are not memoryless, so the
   forecast sweeps the rate instead of trusting one). Its runs are lost (their elapsed time is
   wasted) and re-queued after ``requeue_minutes`` (the 30 s notice and Ray's node-died error). When
   runs are pending, the group recreates the worker after ``recreate_minutes`` (Google publishes no
   recreation time), which boots again; when nothing is pending it is not recreated.
6. The tail: a worker with nothing running while nothing is pending is released (billed for
   ``release_minutes`` more); when the last run ends the group goes to 0, the head writes the report
   and makes the final upload (``finish_minutes``) and powers off. That is the makespan.

Cost = the head's VM-hours at its on-demand price + every worker's VM-hours at its spot (or on-demand)
price (remote_runner/cloud/pricing.py, the stack's region) + each VM's disk (``disk_gb`` at
``disk_usd_per_gb_month``) and external address (``ip_usd_per_hour`` / ``spot_ip_usd_per_hour``).
The registry's storage (cents) and network egress are left out.

Results are p50/p95 over ``samples`` batches per rate, seeded (the same seed gives the same figures;
the same random draws are reused across worker counts and rates, so comparisons between them are not
noise). :func:`workers_for` answers "how many workers for T hours": the smallest count whose p95
makespan meets T at a given rate.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from remote_runner.cloud import pricing

#: preemption rates (per VM-hour) the forecast sweeps by default: 0.5, 2, 5 and 10 %/h
DEFAULT_RATES = (0.005, 0.02, 0.05, 0.10)
#: the rate of the stack's ``forecast`` output
STACK_RATE = 0.02


@dataclass(frozen=True)
class Assumptions:
    """Every assumption of the model, with its default and where the default comes from."""

    #: the head from creation to a running runner: packages, Docker, the venv (it downloads no models)
    head_boot_minutes: float = 6.0
    #: the head builds the 11 Java services and the tools and pushes them (once per batch; docs/cluster.md)
    image_build_minutes: float = 30.0
    #: a worker from its request to joining Ray: packages, Docker, the venv, about 10 GB of models
    #: (issue 21: about 8 min; about 1 min with a baked image)
    worker_boot_minutes: float = 8.0
    #: each boot is drawn uniformly in [1 - jitter, 1 + jitter] x the boot time
    boot_jitter: float = 0.25
    #: the parallel preflight: a 30 s smoke run per API plus readiness, pulls and teardown
    preflight_minutes: float = 5.0
    #: a run's time beyond its budget: image pull on first use, start, readiness, stop, summary, upload
    run_overhead_minutes: float = 3.0
    #: from a preemption to its runs being pending again (30 s notice, Ray's node-died error)
    requeue_minutes: float = 1.0
    #: from a preemption to the group creating the replacement (Google publishes none)
    recreate_minutes: float = 5.0
    #: from a worker's release to the end of its billing (the resize and the deletion)
    release_minutes: float = 1.5
    #: after the last run: report, final upload, the head's power-off
    finish_minutes: float = 10.0
    #: each VM's boot disk (diskSizeGb), and pd-balanced's price (docs/cluster.md, "What it costs")
    disk_gb: float = 100.0
    disk_usd_per_gb_month: float = 0.10
    #: an external IPv4 address per VM, on-demand and spot VMs (docs/cluster.md, "What it costs")
    ip_usd_per_hour: float = 0.005
    spot_ip_usd_per_hour: float = 0.0025
    #: simulated batches per rate, and the seed
    samples: int = 200
    seed: int = 21

    def with_overrides(self, pairs: Mapping[str, Any]) -> Assumptions:
        """A copy with ``pairs`` (field name -> value, text or number) applied; ValueError naming the
        fields for an unknown one."""
        known = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in pairs.items():
            if name not in known:
                raise ValueError(f"unknown assumption {name!r}; known: {', '.join(known)}")
            number = float(value)
            if number < 0 or not math.isfinite(number):
                raise ValueError(f"{name}: {value!r} must be a finite number >= 0")
            changes[name] = int(number) if name in ("samples", "seed") else number
        if changes.get("samples", self.samples) < 1:
            raise ValueError("samples must be at least 1")
        return replace(self, **changes)


#: bakeWorkerImage (docs/cluster.md, "Baked worker image"), estimates until a real run measures them:
#: a worker on the baked image from its request to its Ray join (VM creation and kernel boot about
#: 40-60 s, the guest agent, the guards, the token and `ray start` about 20 s; nothing installed)
BAKED_WORKER_BOOT_MINUTES = 1.5
#: the bake on `pulumi up`: the builder's boot and install (the same steps as an unbaked worker's, about
#: 8 min), the base images' pulls (about 5 GB, about 2 min), the minute it waits before powering off,
#: and the image made of its 30 GB disk (about 3 min); the deploy (and so the head's runner) waits for
#: the worker group, which waits for the image
BAKE_MINUTES = 14.0


def baked(a: Assumptions) -> Assumptions:
    """The assumptions of a stack with a baked worker image: shorter worker boots; the head's runner
    starts once the bake is done if that is later than its own boot."""
    return replace(
        a,
        worker_boot_minutes=BAKED_WORKER_BOOT_MINUTES,
        head_boot_minutes=max(a.head_boot_minutes, BAKE_MINUTES),
    )


@dataclass(frozen=True)
class Batch:
    """What the batch asks: ``runs`` runs of ``budget_minutes``, ``slots`` experiments per worker."""

    runs: int
    budget_minutes: float
    slots: int


@dataclass(frozen=True)
class Cluster:
    workers: int
    worker_machine_type: str
    head_machine_type: str
    region: str
    spot: bool = True

    def prices(self) -> tuple[float, float]:
        """(head USD/h, one worker USD/h): machine list prices (ValueError if the table has none)."""
        head = pricing.hourly_usd(self.head_machine_type, self.region, spot=False)
        worker = pricing.hourly_usd(self.worker_machine_type, self.region, spot=self.spot)
        return head, worker


@dataclass(frozen=True)
class Sample:
    makespan_minutes: float
    head_minutes: float
    worker_minutes: float  # billed VM-minutes of all workers
    busy_minutes: float  # slot-minutes of runs that completed
    lost_minutes: float  # slot-minutes of runs lost to preemptions
    preemptions: int


@dataclass(frozen=True)
class RateResult:
    rate_per_hour: float
    makespan_hours_p50: float
    makespan_hours_p95: float
    cost_usd_p50: float
    cost_usd_p95: float
    worker_vm_hours_mean: float
    lost_run_hours_mean: float
    preemptions_mean: float


@dataclass(frozen=True)
class Forecast:
    batch: Batch
    cluster: Cluster
    assumptions: Assumptions
    head_usd_per_hour: float
    worker_usd_per_hour: float
    results: tuple[RateResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": asdict(self.batch),
            "cluster": asdict(self.cluster),
            "assumptions": asdict(self.assumptions),
            "prices": {
                "head_usd_per_hour": self.head_usd_per_hour,
                "worker_usd_per_hour": self.worker_usd_per_hour,
                "source": pricing.SOURCE,
                "as_of": pricing.PRICES_AS_OF.isoformat(),
            },
            "results": [asdict(r) for r in self.results],
        }


def simulate(
    batch: Batch,
    workers: int,
    rate_per_hour: float,
    a: Assumptions,
    rng: random.Random,
    *,
    kills: Sequence[tuple[float, int]] = (),
) -> Sample:
    """One simulated batch (times in minutes from ``pulumi up``). ``kills``: (minute, worker index)
    preemptions at set times besides the random ones (the calibration's killed worker)."""
    if workers < 1 or batch.slots < 1:
        raise ValueError("a batch needs at least one worker with at least one slot")
    run_minutes = batch.budget_minutes + a.run_overhead_minutes
    rate = rate_per_hour / 60.0
    events: list[tuple[float, int, str, int]] = []
    seq = 0

    def push(t: float, kind: str, wid: int) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, wid))
        seq += 1

    created: list[float] = []
    billed_until: list[float] = []
    alive: list[bool] = []
    joined: list[bool] = []
    running: list[list[float]] = []  # start times of the runs on each worker

    def new_worker(t: float) -> None:
        wid = len(created)
        created.append(t)
        billed_until.append(math.inf)
        alive.append(True)
        joined.append(False)
        running.append([])
        jitter = rng.uniform(1 - a.boot_jitter, 1 + a.boot_jitter) if a.boot_jitter else 1.0
        push(t + a.worker_boot_minutes * jitter, "join", wid)
        if rate > 0:
            push(t + rng.expovariate(rate), "preempt", wid)

    request = a.head_boot_minutes + a.image_build_minutes
    for _ in range(workers):
        new_worker(request)
    for minute, index in kills:
        push(request + minute, "preempt", index)

    pending = batch.runs
    done = 0
    preflight_end: float | None = None
    busy = lost = 0.0
    preemptions = 0
    last_end = request

    def release(wid: int, t: float) -> None:
        alive[wid] = False
        billed_until[wid] = t + a.release_minutes

    def fill(wid: int, t: float) -> None:
        nonlocal pending
        if preflight_end is None or t < preflight_end or not (alive[wid] and joined[wid]):
            return
        free = min(batch.slots - len(running[wid]), pending)
        for _ in range(free):
            running[wid].append(t)
            push(t + run_minutes, "end", wid)
        pending -= free
        if pending == 0 and not running[wid]:
            release(wid, t)

    while events and done < batch.runs:
        t, _, kind, wid = heapq.heappop(events)
        if kind == "join":
            if not alive[wid]:
                continue
            joined[wid] = True
            if preflight_end is None:
                preflight_end = t + a.preflight_minutes
                push(preflight_end, "preflight", -1)
            fill(wid, t)
        elif kind == "preflight":
            for other in range(len(created)):
                fill(other, t)
        elif kind == "end":
            if not alive[wid] or not running[wid]:
                continue
            start = running[wid].pop(0)
            busy += t - start
            done += 1
            last_end = t
            fill(wid, t)
            if alive[wid] and not running[wid] and pending == 0:
                release(wid, t)
        elif kind == "preempt":
            if wid >= len(alive) or not alive[wid]:
                continue
            preemptions += 1
            alive[wid] = False
            billed_until[wid] = t
            lost += sum(t - s for s in running[wid])
            requeued = len(running[wid])
            running[wid] = []
            if requeued:
                push(t + a.requeue_minutes, "requeue", requeued)
            if pending + requeued > 0:
                new_worker(t + a.recreate_minutes)
        elif kind == "requeue":
            pending += wid
            for other in range(len(created)):
                fill(other, t)
    end = last_end
    worker_minutes = sum(
        min(b, end + a.release_minutes) - c for c, b in zip(created, billed_until, strict=True)
    )
    makespan = end + a.finish_minutes
    return Sample(makespan, makespan, max(worker_minutes, 0.0), busy, lost, preemptions)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _cost(sample: Sample, cluster: Cluster, a: Assumptions, head_price: float, worker_price: float) -> float:
    disk_per_hour = a.disk_gb * a.disk_usd_per_gb_month / 730.0  # Google's month is 730 hours
    worker_ip = a.spot_ip_usd_per_hour if cluster.spot else a.ip_usd_per_hour
    head = sample.head_minutes / 60 * (head_price + disk_per_hour + a.ip_usd_per_hour)
    workers = sample.worker_minutes / 60 * (worker_price + disk_per_hour + worker_ip)
    return head + workers


def samples_at(batch: Batch, workers: int, rate: float, a: Assumptions) -> list[Sample]:
    rng = random.Random(f"{a.seed}:{rate!r}")  # noqa: S311  (a seeded simulation, not a secret)
    return [simulate(batch, workers, rate, a, rng) for _ in range(a.samples)]


def forecast(
    batch: Batch, cluster: Cluster, a: Assumptions = Assumptions(), rates: Sequence[float] = DEFAULT_RATES
) -> Forecast:
    """p50/p95 makespan and cost of ``batch`` on ``cluster`` at each preemption rate (per VM-hour; an
    on-demand cluster is not preempted, whatever the rate)."""
    head_price, worker_price = cluster.prices()
    results = []
    for rate in rates:
        effective = rate if cluster.spot else 0.0
        runs = samples_at(batch, cluster.workers, effective, a)
        hours = [s.makespan_minutes / 60 for s in runs]
        costs = [_cost(s, cluster, a, head_price, worker_price) for s in runs]
        results.append(
            RateResult(
                rate_per_hour=rate,
                makespan_hours_p50=_percentile(hours, 0.50),
                makespan_hours_p95=_percentile(hours, 0.95),
                cost_usd_p50=_percentile(costs, 0.50),
                cost_usd_p95=_percentile(costs, 0.95),
                worker_vm_hours_mean=statistics.fmean(s.worker_minutes / 60 for s in runs),
                lost_run_hours_mean=statistics.fmean(s.lost_minutes / 60 for s in runs),
                preemptions_mean=statistics.fmean(s.preemptions for s in runs),
            )
        )
    return Forecast(batch, cluster, a, head_price, worker_price, tuple(results))


def one_wave(batch: Batch) -> int:
    """Workers that run every run at once: more never helps."""
    return max(1, math.ceil(batch.runs / batch.slots))


def workers_for(batch: Batch, target_hours: float, rate: float, a: Assumptions = Assumptions()) -> int | None:
    """The smallest worker count whose p95 makespan is at most ``target_hours`` at ``rate``; None when
    not even one wave (every run at once) meets it. The p95 falls as workers are added (the same draws
    for every count), so: a lower bound from the waves the target leaves room for, doubling until the
    target is met, then a binary search between the last two counts."""

    def meets(n: int) -> bool:
        hours = [s.makespan_minutes / 60 for s in samples_at(batch, n, rate, a)]
        return _percentile(hours, 0.95) <= target_hours

    ceiling = one_wave(batch)
    waves = math.floor(target_hours * 60 / (batch.budget_minutes + a.run_overhead_minutes))
    low = min(ceiling, max(1, math.ceil(batch.runs / (batch.slots * max(waves, 1)))))
    high = low
    while not meets(high):
        if high >= ceiling:
            return None
        low, high = high + 1, min(ceiling, high * 2)
    while low < high:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle + 1
    return high


def render(fc: Forecast, target: tuple[float, float, int | None] | None = None) -> str:
    """The forecast as text: the batch, the cluster and its prices, every assumption, the table."""
    b, c, a = fc.batch, fc.cluster, fc.assumptions
    kind = "spot" if c.spot else "on-demand"
    lines = [
        f"batch: {b.runs} runs x {b.budget_minutes:g} min, {b.slots} per worker",
        f"cluster: {c.workers} x {c.worker_machine_type} ({kind}, {fc.worker_usd_per_hour:.4f} USD/h) + head "
        f"{c.head_machine_type} (on demand, {fc.head_usd_per_hour:.4f} USD/h) in {c.region}",
        f"prices: {pricing.SOURCE} (as of {pricing.PRICES_AS_OF})",
        "assumptions (override with --assume NAME=VALUE):",
        *(f"  {f.name} = {getattr(a, f.name):g}" for f in fields(a)),
    ]
    if target is not None:
        hours, rate, count = target
        answer = f"{count} workers" if count is not None else "not reachable even with every run at once"
        lines.append(f"workers for p95 <= {hours:g} h at {rate * 100:g} %/h preemption: {answer}")
    lines.append(
        f"{'preempt %/h':>11} {'hours p50':>10} {'hours p95':>10} {'USD p50':>9} {'USD p95':>9} "
        f"{'worker VM-h':>12} {'lost run-h':>11} {'preemptions':>12}"
    )
    for r in fc.results:
        lines.append(
            f"{r.rate_per_hour * 100:>11g} {r.makespan_hours_p50:>10.2f} {r.makespan_hours_p95:>10.2f} "
            f"{r.cost_usd_p50:>9.2f} {r.cost_usd_p95:>9.2f} {r.worker_vm_hours_mean:>12.1f} "
            f"{r.lost_run_hours_mean:>11.1f} {r.preemptions_mean:>12.1f}"
        )
    return "\n".join(lines)


# --- the command: python -m remote_runner forecast ----------------------------------------------------

DEFAULT_WORKER = "n2d-standard-32"
DEFAULT_HEAD = "e2-standard-4"
DEFAULT_REGION = "us-central1"


def add_arguments(parser: Any) -> None:
    """The ``forecast`` subcommand's flags (remote_runner/cli.py adds the parser)."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="the batch's settings JSON (the stack's)")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="workers (default: the --target-hours answer)"
    )
    parser.add_argument(
        "--worker-machine-type", default=DEFAULT_WORKER, metavar="T", help=f"default: {DEFAULT_WORKER}"
    )
    parser.add_argument(
        "--head-machine-type", default=DEFAULT_HEAD, metavar="T", help=f"default: {DEFAULT_HEAD}"
    )
    parser.add_argument("--region", default=DEFAULT_REGION, metavar="R", help=f"default: {DEFAULT_REGION}")
    parser.add_argument(
        "--spot", action=argparse.BooleanOptionalAction, default=True, help="spot workers (default)"
    )
    parser.add_argument("--apis", metavar="A,B", help="APIs (default: the settings', else the catalog's)")
    parser.add_argument("--tools", metavar="T,U", help="tools (default: the settings', else the catalog's)")
    parser.add_argument("--runs", metavar="N", help="repetitions of each tool x API (default: the settings')")
    parser.add_argument("--budget", dest="budget_seconds", metavar="DURATION", help="time budget per run")
    parser.add_argument(
        "--target-hours", type=float, metavar="H", help="the smallest worker count with p95 <= H"
    )
    parser.add_argument(
        "--target-rate",
        type=float,
        metavar="PERCENT",
        help="the preemption rate (%%/h) the target is met at (default: the highest of --preemption-rates)",
    )
    parser.add_argument(
        "--preemption-rates", default="0.5,2,5,10", metavar="P,Q", help="%%/h per VM (default: 0.5,2,5,10)"
    )
    parser.add_argument(
        "--assume",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an assumption (repeatable)",
    )
    parser.add_argument(
        "--baked-worker-image",
        action="store_true",
        help=f"the stack bakes the workers' image: boots of {BAKED_WORKER_BOOT_MINUTES:g} min, the head's "
        f"start after the {BAKE_MINUTES:g} min bake (before any --assume)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(p) / 100 for p in text.split(",") if p.strip())
    except ValueError:
        rates = ()
    if not rates or any(r < 0 or not math.isfinite(r) for r in rates):
        raise ValueError(f"--preemption-rates {text!r}: comma-separated percentages >= 0, e.g. 0.5,2,5,10")
    return rates


def run(args: Any, settings: Any, problems: list[str]) -> int:
    """``python -m remote_runner forecast``: the batch's size from ``settings`` (apis x tools x runs x
    budget; APIs and tools from the catalog when the settings name none), the cluster from the flags."""
    from remote_runner.common import exit_codes
    from remote_runner.experiment import catalog as catalog_mod

    problems = list(problems)
    apis, tools = settings.apis, settings.tools
    if not apis or not tools:
        cat = catalog_mod.load(settings.catalog)
        apis = apis or tuple(sorted(cat.apis))
        tools = tools or tuple(sorted(cat.tools))
        if not apis or not tools:
            problems.append(
                f"no APIs or tools named and none found in {settings.catalog}: give --apis and --tools"
            )
    a = Assumptions()
    rates: tuple[float, ...] = DEFAULT_RATES
    slots = 0
    if getattr(args, "baked_worker_image", False):
        a = baked(a)
    try:
        a = a.with_overrides(dict(item.partition("=")[::2] for item in args.assume))
    except ValueError as exc:
        problems.append(f"--assume: {exc}")
    try:
        rates = _rates(args.preemption_rates)
    except ValueError as exc:
        problems.append(str(exc))
    for name, spot in ((args.worker_machine_type, args.spot), (args.head_machine_type, False)):
        try:
            pricing.hourly_usd(name, args.region, spot=spot)
        except ValueError as exc:
            problems.append(str(exc))
    if args.worker_machine_type in pricing.MACHINES:
        worker = pricing.MACHINES[args.worker_machine_type]
        slots = pricing.experiment_slots(
            worker.vcpus,
            worker.memory_gb,
            settings.cpus_per_container,
            settings.memory_per_container / 1024**3,
            settings.min_free_cpus,
        )
        if slots == 0:
            problems.append(f"{worker.name} fits no experiment with these limits: choose a bigger worker")
    if args.workers is None and args.target_hours is None:
        problems.append("give --workers N, or --target-hours H for the smallest count that meets H")
    if args.workers is not None and args.workers < 1:
        problems.append(f"--workers {args.workers}: at least 1")
    if problems:
        print("cannot forecast: fix these and run again:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    batch = Batch(len(apis) * len(tools) * settings.runs, settings.budget_seconds / 60, slots)
    target = None
    workers = args.workers
    if args.target_hours is not None:
        rate = max(rates) if args.target_rate is None else args.target_rate / 100
        found = workers_for(batch, args.target_hours, rate if args.spot else 0.0, a)
        target = (args.target_hours, rate, found)
        workers = workers if workers is not None else (found or one_wave(batch))
    cluster = Cluster(workers, args.worker_machine_type, args.head_machine_type, args.region, args.spot)
    fc = forecast(batch, cluster, a, rates)
    if args.json:
        doc = fc.to_json()
        if target is not None:
            doc["target"] = {"hours": target[0], "rate_per_hour": target[1], "workers": target[2]}
        print(json.dumps(doc, indent=2))
    else:
        print(render(fc, target))
    return 0
