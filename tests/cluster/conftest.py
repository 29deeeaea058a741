"""A real Ray cluster on this machine for the cluster-mode tests: a head that runs no experiment and
two worker nodes of different sizes, each its own ``ray start`` process with its own ports (they share
this machine's Docker engine, so the runner scopes names and labels per node and attempt).

The cluster lives for one test module only (module-scoped fixtures): idle, a head with its dashboard
and two workers still hold 2.3 GB and about 11% of a CPU (measured), which the timing-sensitive tests
that run after them on this 2-core machine would lose.

The cluster runs as Google Cloud's would, in the two ways that matter to what it runs: with Ray's
token authentication on (``RAY_AUTH_MODE=token`` and a token file on every node and the driver,
docs.ray.io ray-security/token-auth), and on an address that is not loopback (a veth pair into a
network namespace of the tests' own, :func:`lab_network`), so experiment containers could reach it as
they would reach a VM's internal address unless the guards stop them.

Sizes (Ray resources, not this machine's): worker ``big`` 2 CPUs, 1 GiB, 2 experiment slots; worker
``small`` 1 CPU, 512 MiB, 1 slot. The tests ask 2 x 0.5 CPU and 2 x 64 MiB per experiment, so the
cluster holds 3 at once: 2 on ``big``, 1 on ``small``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.runner.conftest import ROOT, fixture_images, runner_env, test_label  # noqa: F401  (fixtures)

RAY = str(Path(sys.executable).with_name("ray"))
#: the host's side of the tests' veth pair and the "other host" in its network namespace (RFC 2544's
#: benchmarking range: nobody's address, never routed off this machine)
HOST_IP, OTHER_IP = "198.18.0.1", "198.18.0.2"
NETNS, VETH_HOST, VETH_OTHER = "lrt-other", "lrt-veth0", "lrt-veth1"
HEAD_PORT = 46379
DASHBOARD_PORT = 48265
OBJECT_STORE = str(100 * 1024**2)


@dataclass
class WorkerNode:
    name: str
    cpus: int
    memory: int
    slots: int
    base: int  # first of this node's ports
    node_id: str = ""

    def start_args(self, ip: str) -> list[str]:
        b = self.base
        return [
            "start",
            f"--address={ip}:{HEAD_PORT}",
            f"--node-ip-address={ip}",
            f"--num-cpus={self.cpus}",
            f"--memory={self.memory}",
            f"--object-store-memory={OBJECT_STORE}",
            f"--resources={json.dumps({'experiment_slot': self.slots, f'test_node_{self.name}': 1})}",
            f"--node-manager-port={b}",
            f"--object-manager-port={b + 1}",
            f"--metrics-export-port={b + 2}",
            f"--runtime-env-agent-port={b + 3}",
            f"--dashboard-agent-grpc-port={b + 4}",
            f"--dashboard-agent-listen-port={b + 5}",
            f"--min-worker-port={b + 20}",
            f"--max-worker-port={b + 80}",
            "--disable-usage-stats",
        ]


@dataclass
class RayCluster:
    address: str
    workers: dict[str, WorkerNode] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"

    def nodes(self) -> list[dict]:
        probe = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR', "
            "log_to_driver=False); print('NODES', json.dumps([{k: n[k] for k in "
            "('NodeID', 'Alive', 'NodeManagerPort', 'Resources')} for n in ray.nodes()]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        # Ray may print its own warnings (a node that died) around ours
        line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("NODES "))
        return json.loads(line.removeprefix("NODES "))

    def alive_ids(self) -> dict[str, str]:
        """worker name -> node id, for the workers alive now."""
        ports = {w.base: w.name for w in self.workers.values()}
        return {
            ports[n["NodeManagerPort"]]: n["NodeID"]
            for n in self.nodes()
            if n["Alive"] and n["NodeManagerPort"] in ports
        }

    def start_worker(self, name: str) -> None:
        node = self.workers[name]
        res = subprocess.run(
            [RAY, *node.start_args(self.ip)],
            # the instance the node says it runs on (scale-in); on Google Cloud its host name
            env={**self.env, "LLAMARESTTEST_INSTANCE": f"lrt-{name}"},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert res.returncode == 0, f"ray start ({name}) failed:\n{res.stdout}\n{res.stderr}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = self.alive_ids()
            if name in alive:
                node.node_id = alive[name]
                return
            time.sleep(0.5)
        raise AssertionError(f"worker {name} did not join the cluster")

    def raylet(self, name: str) -> psutil.Process:
        port = self.workers[name].base
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = proc.info["cmdline"] or []
            if any("raylet" in part for part in cmd[:1]) and f"--node_manager_port={port}" in cmd:
                return proc
        raise AssertionError(f"no raylet of worker {name} (port {port})")

    def kill_worker(self, name: str) -> None:
        """SIGKILLs the worker's raylet, as a preempted machine would vanish."""
        self.raylet(name).send_signal(signal.SIGKILL)

    def ensure_worker(self, name: str) -> None:
        if name not in self.alive_ids():
            self.start_worker(name)


#: every Ray process of a test cluster carries this in its environment (``ray start`` passes its
#: environment on to the GCS, the raylets, the agents and the workers), so the tests stop their own
#: clusters by it, never another job's Ray (``ray stop`` ends every Ray process of the machine)
MARKER = "LLAMARESTTEST_TEST_CLUSTER"


def own_ray_processes(value: str | None = None) -> list[psutil.Process]:
    """Processes of the tests' Ray clusters: those of the cluster whose marker is ``value``, or of any
    test cluster (a leftover of an earlier run) when None."""
    found = []
    for proc in psutil.process_iter():
        try:
            marker = proc.environ().get(MARKER)
        except (psutil.Error, OSError):
            continue
        if marker and (value is None or marker == value):
            found.append(proc)
    return found


def stop_all(env: dict[str, str] | None = None) -> None:
    """Stops the test cluster of ``env`` (every test cluster when None): SIGTERM, then SIGKILL."""
    procs = own_ray_processes(env.get(MARKER) if env else None)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=15)


def lab_network() -> None:
    """A veth pair: ``HOST_IP`` on this machine, ``OTHER_IP`` in the network namespace ``NETNS``
    (another host, as far as Docker's FORWARD chain can tell). Made afresh (a leftover is removed)."""
    drop_lab_network()
    for argv in (
        ["ip", "netns", "add", NETNS],
        ["ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_OTHER],
        ["ip", "link", "set", VETH_OTHER, "netns", NETNS],
        ["ip", "addr", "add", f"{HOST_IP}/24", "dev", VETH_HOST],
        ["ip", "link", "set", VETH_HOST, "up"],
        ["ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{OTHER_IP}/24", "dev", VETH_OTHER],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", VETH_OTHER, "up"],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
    ):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr}"


def drop_lab_network() -> None:
    subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, timeout=30, check=False)
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, timeout=30, check=False)


def start_cluster(
    env: dict[str, str], temp: Path = Path("/tmp/lrt-ray"), ip: str = "127.0.0.1"
) -> RayCluster:
    """Starts the head and both workers (the tests' own leftover clusters stopped first: the ports are
    fixed).
    ``temp`` is Ray's session folder: short, as its socket paths must fit 107 bytes."""
    shutil.rmtree(temp, ignore_errors=True)
    stop_all()
    head = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={HEAD_PORT}",
            f"--node-ip-address={ip}",
            f"--temp-dir={temp}",
            "--num-cpus=0",
            f"--object-store-memory={OBJECT_STORE}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={DASHBOARD_PORT}",
            "--node-manager-port=46380",
            "--object-manager-port=46381",
            "--ray-client-server-port=46382",
            "--dashboard-agent-listen-port=46383",
            "--metrics-export-port=46384",
            "--runtime-env-agent-port=46385",
            "--dashboard-agent-grpc-port=46386",
            "--min-worker-port=46400",
            "--max-worker-port=46460",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert head.returncode == 0, f"ray start --head failed:\n{head.stdout}\n{head.stderr}"
    cluster = RayCluster(
        address=f"{ip}:{HEAD_PORT}",
        workers={
            "big": WorkerNode("big", cpus=2, memory=1024**3, slots=2, base=46500),
            "small": WorkerNode("small", cpus=1, memory=512 * 1024**2, slots=1, base=46600),
        },
        env=env,
        ip=ip,
    )
    for name in cluster.workers:
        cluster.start_worker(name)
    return cluster


def cluster_env(scratch: Path) -> dict[str, str]:
    env = runner_env()
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env[MARKER] = secrets.token_hex(8)
    env["LLAMARESTTEST_NODE_SCRATCH"] = str(scratch)
    # token authentication on every node and the driver, as the stack's units set it
    token = scratch / "ray-token"
    token.write_text(secrets.token_hex(32), encoding="utf-8")
    token.chmod(0o600)
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    # the head's two Prometheus ports are otherwise Ray's defaults (44217, 44227): pinned beside the
    # others, as the stack's Ray unit pins them (stacks/ray_nodes.py)
    env["AUTOSCALER_METRIC_PORT"] = "46387"
    env["DASHBOARD_METRIC_PORT"] = "46388"
    return env


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    env = cluster_env(tmp_path_factory.mktemp("node-scratch"))
    lab_network()
    try:
        yield start_cluster(env, ip=HOST_IP)
    finally:
        stop_all(env)
        shutil.rmtree("/tmp/lrt-ray", ignore_errors=True)
        drop_lab_network()


@pytest.fixture
def cluster(ray_cluster: RayCluster) -> RayCluster:
    """The session's cluster with both workers alive (a test may have killed one)."""
    for name in ray_cluster.workers:
        ray_cluster.ensure_worker(name)
    return ray_cluster


def cluster_cli(cluster: RayCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_runner", *args],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cluster_spawn(cluster: RayCluster, *args: str, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "remote_runner", *args],
        cwd=ROOT,
        env=cluster.env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def attempts(batch_dir: Path) -> list[dict[str, object]]:
    import sqlite3

    db = sqlite3.connect(f"file:{batch_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM attempts ORDER BY started, attempt")]
    except sqlite3.OperationalError:  # the driver is still creating the journal
        return []
    finally:
        db.close()


@dataclass
class Registry:
    address: str  # HOST:PORT
    log: Path

    def prefix(self, name: str) -> str:
        return f"{self.address}/{name}"

    def served(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry (the CNCF distribution registry) on loopback, storage in a temporary
    folder; Docker treats 127.0.0.0/8 registries as insecure by itself, so plain HTTP is fine."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert Path(binary).is_file(), "docker-registry missing: scripts/bootstrap.sh installs it"
    folder = tmp_path_factory.mktemp("registry")
    port = 45000
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    log = folder / "registry.log"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"docker-registry did not start:\n{log.read_text()}") from None
                time.sleep(0.3)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        proc.wait(30)
