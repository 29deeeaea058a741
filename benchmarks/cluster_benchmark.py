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

Without ``--address`` it starts a cluster of that shape of its own (ports 47xxx, apart from the
tests' 46xxx cluster, which may be running) and stops exactly that cluster's processes by PID:
``ray stop`` would end every Ray process of the machine, another job's included. Each node is a
``ray start --block`` in a session of its own, so each of the node's processes descends from it.

    PATH=/usr/bin:$PATH .venv/bin/python benchmarks/cluster_benchmark.py
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_runner.batch import journal, plan
from remote_runner.batch.scheduler import Scheduler
from remote_runner.experiment.lifecycle import SUCCEEDED, ExperimentSpec, Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement.admission import Machine, Measurement, Policy, Request, Reservation

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
    from remote_runner.placement.local import LocalPlacement

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
    from remote_runner.experiment.catalog import Api, Tool
    from remote_runner.placement import cluster

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


HEAD_PORT = 47379
#: name -> (CPUs, memory, experiment slots, first port): the shape of tests/cluster/conftest.py's
WORKERS = {"big": (2, 1024**3, 2, 47500), "small": (1, 512 * 1024**2, 1, 47600)}
OBJECT_STORE = str(100 * 1024**2)


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class OwnCluster:
    """A head and two workers started by this benchmark, stopped by the PIDs of their processes."""

    def __init__(self, env: dict[str, str], temp: Path, logs: Path) -> None:
        self.env = env
        self.temp = temp  # short: Ray's socket paths must fit 107 bytes
        self.logs = logs
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.address = f"127.0.0.1:{HEAD_PORT}"

    def _start(self, name: str, args: list[str]) -> None:
        from tests.cluster.conftest import RAY

        log = self._log(name).open("wb")
        self.names.append(name)
        self.nodes.append(
            subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: a Ctrl-C of ours reaches it only through stop()
            )
        )

    def _log(self, name: str) -> Path:
        return self.logs / f"ray-{name}.log"

    def start(self) -> None:
        ports = [HEAD_PORT, *range(47380, 47387), *(base for *_, base in WORKERS.values())]
        busy = [p for p in ports if _port_busy(p)]
        if busy:
            raise SystemExit(f"ports {busy} are in use (another cluster?): pass --address, or wait")
        self._start(
            "head",
            [
                "--head",
                f"--port={HEAD_PORT}",
                f"--temp-dir={self.temp}",
                "--num-cpus=0",
                f"--object-store-memory={OBJECT_STORE}",
                "--include-dashboard=false",
                "--node-manager-port=47380",
                "--object-manager-port=47381",
                "--ray-client-server-port=47382",
                "--dashboard-agent-listen-port=47383",
                "--metrics-export-port=47384",
                "--runtime-env-agent-port=47385",
                "--dashboard-agent-grpc-port=47386",
                "--min-worker-port=47400",
                "--max-worker-port=47460",
            ],
        )
        self._wait(lambda: _port_busy(HEAD_PORT), "the head")
        for name, (cpus, memory, slots, b) in WORKERS.items():
            resources = json.dumps({"experiment_slot": slots, f"test_node_{name}": 1})
            self._start(
                name,
                [
                    f"--address={self.address}",
                    f"--num-cpus={cpus}",
                    f"--memory={memory}",
                    f"--object-store-memory={OBJECT_STORE}",
                    f"--resources={resources}",
                    f"--node-manager-port={b}",
                    f"--object-manager-port={b + 1}",
                    f"--metrics-export-port={b + 2}",
                    f"--runtime-env-agent-port={b + 3}",
                    f"--dashboard-agent-grpc-port={b + 4}",
                    f"--dashboard-agent-listen-port={b + 5}",
                    f"--min-worker-port={b + 20}",
                    f"--max-worker-port={b + 80}",
                ],
            )
        from tests.cluster.conftest import RayCluster

        probe = RayCluster(self.address, env=self.env)
        self._wait(lambda: sum(n["Alive"] for n in probe.nodes()) == 1 + len(WORKERS), "the workers")

    def _wait(self, ready: Any, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = [
                name for name, node in zip(self.names, self.nodes, strict=True) if node.poll() is not None
            ]
            if exited:
                tails = "\n".join(
                    f"--- {name}:\n"
                    + "\n".join(self._log(name).read_text(errors="replace").splitlines()[-15:])
                    for name in exited
                )
                raise SystemExit(
                    f"ray start of {', '.join(exited)} exited while waiting for {what}:\n{tails}"
                )
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"{what} did not come up in {timeout:.0f} s")

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: the ray start commands we ran, their descendants, and any
        process that names our temp folder or carries our node scratch folder in its environment
        (one its parent left behind); both folders are this run's own."""
        found: dict[int, psutil.Process] = {}
        for node in self.nodes:
            try:
                root = psutil.Process(node.pid)
                found[root.pid] = root
                found.update({c.pid: c for c in root.children(recursive=True)})
            except psutil.NoSuchProcess:
                continue
        # a process whose parent died first is no descendant any more; it still names our temp folder
        # or carries our environment (Ray's agents rename themselves, "ray::DashboardAgent")
        scratch = self.env.get("LLAMARESTTEST_NODE_SCRATCH")
        for proc in psutil.process_iter(["cmdline", "environ"]):
            env = proc.info["environ"] or {}
            if any(str(self.temp) in part for part in proc.info["cmdline"] or []) or (
                scratch is not None and env.get("LLAMARESTTEST_NODE_SCRATCH") == scratch
            ):
                found.setdefault(proc.pid, proc)
        found.pop(psutil.Process().pid, None)
        return list(found.values())

    def stop(self) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=20)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=10)
        for node in self.nodes:
            node.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


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
        own = None
        address = args.address
        if address is None:
            from tests.cluster.conftest import cluster_env

            temp = Path(tempfile.mkdtemp(prefix="lrtb-", dir="/tmp"))  # short: socket paths
            own = OwnCluster(cluster_env(root / "scratch"), temp, root)
            started = time.monotonic()
            try:
                own.start()
            except BaseException:
                own.stop()
                raise
            address = own.address
            print(f"local Ray cluster (head + 2 workers) up in {time.monotonic() - started:.1f} s")
        try:
            (root / "local").mkdir()
            local = figures(jobs, *run_local(jobs, root / "local"))
            (root / "ray").mkdir()
            ray_figures = figures(jobs, *run_ray(jobs, root / "ray", address))
        finally:
            if own is not None:
                import ray

                ray.shutdown()  # this driver's connection, before its cluster goes
                own.stop()
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
