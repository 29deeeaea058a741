"""Scheduler benchmark (a script, not a test): one synthetic matrix on the local Docker engine, run
under our scheduler and under a baseline gate modelled on run_parallel.py, one after the other.

Each job is one container that keeps its CPU quota busy for a fixed wall time (so the machine's
measured load is real, which is what the baseline's psutil gate looks at). Our scheduler admits by
reservation (whole-CPU jobs pinned with --cpuset-cpus, fractional ones with --cpus) and wakes on
every job end; the baseline launches jobs in order when a psutil snapshot (``cpu_percent()`` with no
interval) shows ``min_free`` CPUs, sleeping a fixed gap after each launch and a fixed interval between
checks (60 s and 30 s for a 1 h experiment in run_parallel.py, scaled here by job length / 3600, and
its 14-of-32 free-CPU requirement scaled to this machine).

Printed for each: makespan / lower bound, where the lower bound is the total reserved CPU-seconds
(each job's CPUs x the time it held them, from launch to its container's removal) divided by the
machine's CPUs; the nominal bound (CPUs x job length) too; the median delay from a job's end (its
resources freeing) to the next start while jobs were waiting; and the peak of CPUs reserved at once
(above the machine's count = overcommit).

    PATH=/usr/bin:$PATH .venv/bin/python benchmarks/scheduler_benchmark.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_runner.batch import journal, plan
from remote_runner.batch.scheduler import Sampler, Scheduler
from remote_runner.experiment.docker_runtime import ContainerSpec, Docker
from remote_runner.experiment.lifecycle import SUCCEEDED, Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement import admission
from remote_runner.placement.admission import Machine, Policy, Request, Reservation

IMAGE = "debian:bookworm-slim"
LABEL = "llamaresttest.benchmark"
#: this run's value of LABEL: what it removes at its end is its own, never another run's containers
RUN_ID = uuid.uuid4().hex[:12]
MEMORY = 64 * 1024**2


@dataclass(frozen=True)
class Job:
    name: str
    cpus: float


@dataclass
class Result:
    starts: dict[str, float]
    ends: dict[str, float]
    cpus: dict[str, float]


def busy_spec(job: Job, tag: str, seconds: float, cpuset: str | None) -> ContainerSpec:
    return ContainerSpec(
        name=f"lrt-bench-{tag}-{job.name}",
        image=IMAGE,
        network="none",
        labels={LABEL: RUN_ID},
        cpus=job.cpus,
        cpuset=cpuset,
        memory_bytes=MEMORY,
        command=("timeout", f"{seconds:g}", "sh", "-c", "while :; do :; done"),
    )


def run_container(docker: Docker, spec: ContainerSpec, seconds: float) -> None:
    docker.run(spec)
    try:
        docker.wait(spec.name, timeout=seconds + 120)
    finally:
        docker.remove([spec.name])


def ours(jobs: list[Job], machine: Machine, seconds: float, docker: Docker) -> Result:
    tag = "ours-" + uuid.uuid4().hex[:6]
    by_name = {j.name: j for j in jobs}
    keys = plan.expand(("bench",), tuple(j.name for j in jobs), 1)
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}

    def start(key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
        job = by_name[key.tool]
        starts[job.name] = time.monotonic()
        sets = reservation.cpusets[0]
        run_container(
            docker, busy_spec(job, tag, seconds, admission.cpuset_arg(sets) if sets else None), seconds
        )
        ends[job.name] = time.monotonic()
        return Outcome(SUCCEEDED)

    with tempfile.TemporaryDirectory() as tmp:
        jour = journal.Journal(Path(tmp) / "journal.sqlite")
        jour.add_runs(keys)
        sampler = Sampler(machine.cpus)
        sched = Scheduler(
            jour=jour,
            machine=machine,
            policy=Policy(min_free_cpus=0),
            request_for=lambda k: Request(by_name[k.tool].cpus, MEMORY, containers=1),
            start=start,
            measure=sampler.measure,
            max_attempts=1,
            stop=threading.Event(),
        )
        try:
            assert sched.run(), "scheduler stopped early"
        finally:
            sampler.close()
            jour.close()
    return Result(starts, ends, {j.name: j.cpus for j in jobs})


def baseline(jobs: list[Job], machine: Machine, seconds: float, docker: Docker, scale: float) -> Result:
    import psutil

    tag = "base-" + uuid.uuid4().hex[:6]
    min_free = 14 / 32 * machine.cpus
    launch_gap, check_interval = 60 * scale, 30 * scale
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    threads = []

    def one(job: Job) -> None:
        run_container(docker, busy_spec(job, tag, seconds, None), seconds)
        ends[job.name] = time.monotonic()

    for job in jobs:
        while (1 - psutil.cpu_percent() / 100) * machine.cpus < min_free:  # snapshot, as run_parallel.py
            time.sleep(check_interval)
        starts[job.name] = time.monotonic()
        thread = threading.Thread(target=one, args=(job,))
        thread.start()
        threads.append(thread)
        time.sleep(launch_gap)
    for thread in threads:
        thread.join()
    return Result(starts, ends, {j.name: j.cpus for j in jobs})


def figures(result: Result, machine: Machine, seconds: float) -> dict[str, float]:
    first = min(result.starts.values())
    makespan = max(result.ends.values()) - first
    held = sum(result.cpus[n] * (result.ends[n] - result.starts[n]) for n in result.starts)
    nominal = sum(result.cpus[n] * seconds for n in result.starts)
    start_times = sorted(result.starts.values())
    last_start = start_times[-1]
    delays = []
    for end in sorted(result.ends.values()):
        if end >= last_start:
            break  # nothing was waiting any more
        nxt = min((s for s in start_times if s >= end), default=None)
        if nxt is not None:
            delays.append(nxt - end)
    events = sorted(
        [(t, result.cpus[n]) for n, t in result.starts.items()]
        + [(t, -result.cpus[n]) for n, t in result.ends.items()],
        key=lambda e: (e[0], e[1]),
    )
    peak = level = 0.0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    bound = held / machine.cpus
    return {
        "makespan": makespan,
        "bound": bound,
        "ratio": makespan / bound,
        "nominal_ratio": makespan / (nominal / machine.cpus),
        "median_delay": statistics.median(delays) if delays else float("nan"),
        "delays": float(len(delays)),
        "peak": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wall time of each job (default 10)")
    parser.add_argument("--half-cpu-jobs", type=int, default=8, help="jobs of 0.5 CPU (default 8)")
    parser.add_argument("--whole-cpu-jobs", type=int, default=4, help="jobs of 1 pinned CPU (default 4)")
    parser.add_argument(
        "--cpus", type=int, default=None, help="machine CPUs for admission (default: this machine's)"
    )
    parser.add_argument(
        "--baseline-scale",
        type=float,
        default=None,
        help="factor on run_parallel.py's 60 s / 30 s sleeps (default: job length / 3600 s)",
    )
    args = parser.parse_args()
    import psutil

    docker = Docker()
    problem = docker.engine_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    machine = Machine(args.cpus or psutil.cpu_count() or 1, psutil.virtual_memory().total)
    jobs = [Job(f"h{i}", 0.5) for i in range(args.half_cpu_jobs)] + [
        Job(f"w{i}", 1.0) for i in range(args.whole_cpu_jobs)
    ]
    # interleave sizes, as a matrix of different APIs would
    jobs.sort(key=lambda j: (int(j.name[1:]), j.name[0]))
    scale = args.baseline_scale if args.baseline_scale is not None else args.seconds / 3600
    print(
        f"matrix: {len(jobs)} jobs of {args.seconds:g} s ({args.half_cpu_jobs} x 0.5 CPU, "
        f"{args.whole_cpu_jobs} x 1 CPU), machine {machine.cpus} CPUs; baseline: min free "
        f"{14 / 32 * machine.cpus:.3f} CPUs, launch gap {60 * scale:.3f} s, check every {30 * scale:.3f} s"
    )
    rows = []
    for name, fn in (
        ("ours", lambda: ours(jobs, machine, args.seconds, docker)),
        ("baseline (run_parallel.py gate)", lambda: baseline(jobs, machine, args.seconds, docker, scale)),
    ):
        result = fn()
        rows.append((name, figures(result, machine, args.seconds)))
    print(
        f"{'scheduler':<32} {'makespan s':>10} {'bound s':>8} {'makespan/bound':>14} {'/nominal':>9} "
        f"{'median start delay s':>21} {'peak CPUs':>9}"
    )
    for name, f in rows:
        print(
            f"{name:<32} {f['makespan']:>10.2f} {f['bound']:>8.2f} {f['ratio']:>14.3f} "
            f"{f['nominal_ratio']:>9.3f} {f['median_delay']:>21.3f} {f['peak']:>9.2f}"
        )
    leftover = docker.containers_with_label(f"{LABEL}={RUN_ID}")
    if leftover:
        docker.remove(leftover)
    return 0


if __name__ == "__main__":
    sys.exit(main())
