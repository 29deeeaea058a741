"""The control plane is closed to what the cluster runs (issue 19, docs/cluster.md "Network and
ports"): on a real Ray cluster with token authentication, bound to an address that is not loopback
(tests/cluster/conftest.py), a container on an experiment network tries every port a Ray process of
the cluster listens on (found from the sockets themselves, not from our list), the Ray ports of
another host (a network namespace), and the dashboard agent's job API with and without the token.

Before the guards are installed the container reaches them (so the probe can fail); with the guards
of stacks/ray_nodes.py (the rules the startup scripts install) every attempt fails while ports the
guards do not name stay reachable, and the runner's batch still completes on the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stacks.ray_nodes import container_guard_rules
from tests.cluster.conftest import DASHBOARD_PORT, HOST_IP, NETNS, OTHER_IP, RayCluster, cluster_cli
from tests.runner.conftest import BASE_IMAGE, journal_rows, only_batch

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: the test cluster's fixed ports (conftest.py), as the stack fixes its own with ray start's flags
GUARDED = [
    "46379:46388",
    "46400:46460",
    "46500:46505",
    "46520:46580",
    "46600:46605",
    "46620:46680",
    str(DASHBOARD_PORT),
]
CONTROL_HOST, CONTROL_OTHER = 47002, 47001  # listeners the guards do not name: must stay reachable
OTHER_RAY_PORT = 46379  # a Ray port number on the other host
JOB_API = "/api/job_agent/jobs/"

PROBE = r"""
import json, socket, sys, urllib.request, urllib.error
targets, token = json.loads(sys.argv[1]), sys.argv[2]
out = {}
for host, port in targets:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port)); out[f"{host}:{port}"] = "open"
    except ConnectionRefusedError:
        out[f"{host}:{port}"] = "refused"
    except OSError as exc:
        out[f"{host}:{port}"] = type(exc).__name__
    finally:
        s.close()
for label, headers in (("job-api", {}), ("job-api+token", {"Authorization": f"Bearer {token}"})):
    req = urllib.request.Request(sys.argv[3], data=b'{"entrypoint": "id"}', headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            out[label] = f"http {r.status}"
    except urllib.error.HTTPError as exc:
        out[label] = f"http {exc.code}"
    except OSError as exc:
        out[label] = f"no connection ({type(getattr(exc, 'reason', exc)).__name__})"
print(json.dumps(out))
"""


def ray_listening_ports() -> set[int]:
    """Every TCP port a process of the Ray cluster listens on, on an address a container could reach
    (any address or the cluster's own; loopback is the container's own)."""
    ports: set[int] = set()
    for conn in psutil.net_connections(kind="tcp"):
        if (
            conn.status != psutil.CONN_LISTEN
            or conn.pid is None
            or conn.laddr.ip not in ("0.0.0.0", "::", HOST_IP)  # noqa: S104 (what a container reaches)
        ):
            continue
        try:
            cmd = " ".join(psutil.Process(conn.pid).cmdline())
        except psutil.Error:
            continue
        if "/ray/" in cmd or "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
            ports.add(conn.laddr.port)
    return ports


def listener(argv_prefix: list[str], ip: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*argv_prefix, sys.executable, "-m", "http.server", str(port), "--bind", ip],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def experiment_network(test_label: str) -> Iterator[str]:
    name = f"lrt-probe-{abs(hash(test_label)) % 10**8}"
    subprocess.run(
        ["docker", "network", "create", "--label", test_label, name], check=True, capture_output=True
    )
    yield name
    subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


def probe(
    network: str, targets: list[tuple[str, int]], token: str, job_api: str, label: str
) -> dict[str, str]:
    res = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            network,
            "--label",
            label,
            BASE_IMAGE,
            "python3",
            "-c",
            PROBE,
            json.dumps(targets),
            token,
            job_api,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def iptables(action: str, rule: list[str]) -> None:
    res = subprocess.run(["iptables", "-w", "5", action, *rule], capture_output=True, text=True, check=False)
    assert res.returncode == 0 or action == "-D", res.stderr


def test_containers_reach_no_ray_port_of_any_node_once_guarded(
    cluster: RayCluster, fixture_images: Path, experiment_network: str, test_label: str, tmp_path: Path
) -> None:
    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    agent = 46383  # the head's --dashboard-agent-listen-port (conftest.py)
    job_api = f"http://{HOST_IP}:{agent}{JOB_API}"
    # the job API answers only with the token (from the host, where the guards do not apply)
    for headers, refused in (({}, True), ({"Authorization": f"Bearer {token}"}, False)):
        request = urllib.request.Request(job_api, data=b"{}", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (http, built here)
                code = answer.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        assert (code in (401, 403)) == refused, (headers.keys(), code)

    ray_ports = ray_listening_ports()
    assert {46379, 46380, 46383, 46500, 46600} <= ray_ports, sorted(ray_ports)
    others = [
        listener([], HOST_IP, CONTROL_HOST),
        listener(["ip", "netns", "exec", NETNS], OTHER_IP, OTHER_RAY_PORT),
        listener(["ip", "netns", "exec", NETNS], OTHER_IP, CONTROL_OTHER),
    ]
    rules = container_guard_rules(GUARDED)
    try:
        targets = [(HOST_IP, p) for p in sorted(ray_ports)] + [
            (HOST_IP, CONTROL_HOST),
            (OTHER_IP, OTHER_RAY_PORT),
            (OTHER_IP, CONTROL_OTHER),
        ]
        open_before = probe(experiment_network, targets, token, job_api, test_label)
        # unguarded, a container reaches the control plane of its node and of another host
        assert (
            open_before[f"{HOST_IP}:46379"] == "open"
            and open_before[f"{OTHER_IP}:{OTHER_RAY_PORT}"] == "open"
        )
        assert open_before["job-api"].startswith("http 40")  # reached; only the token keeps it out
        for rule in rules:
            iptables("-I", rule)
        after = probe(experiment_network, targets, token, job_api, test_label)
        print(f"\nfrom a container on an experiment network, guarded: {json.dumps(after, indent=1)}")
        reached = [
            t
            for t, v in after.items()
            if v == "open" and t not in (f"{HOST_IP}:{CONTROL_HOST}", f"{OTHER_IP}:{CONTROL_OTHER}")
        ]
        assert reached == [], f"Ray ports a container still reaches: {reached}"
        assert after[f"{HOST_IP}:{CONTROL_HOST}"] == "open" and after[f"{OTHER_IP}:{CONTROL_OTHER}"] == "open"
        assert after["job-api"].startswith("no connection") and after["job-api+token"].startswith(
            "no connection"
        )

        # and the runner's own batch still runs on the guarded, authenticated cluster
        results = tmp_path / "results"
        res = cluster_cli(
            cluster,
            "run",
            "--ray",
            cluster.address,
            "--catalog",
            str(fixture_images),
            "--results",
            str(results),
            "--apis",
            "fx-echo",
            "--tools",
            "fx-good",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "64m",
            "--min-free-cpus",
            "0",
            "--no-preflight",
            "--no-build",
            "--budget",
            "4s",
            "--label",
            test_label,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert [r["status"] for r in journal_rows(only_batch(results))] == ["succeeded"]
    finally:
        for rule in rules:
            iptables("-D", rule)
        for proc in others:
            proc.terminate()
            proc.wait(10)
