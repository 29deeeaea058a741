"""How the cluster's machines run Ray: fixed ports, the ``ray start`` command lines, their systemd unit.

Pure: the startup scripts (stacks/startup.py) carry the unit text, and the firewall (stacks/cluster.py)
opens exactly the ports fixed here. Ray binds most of its ports at random unless told otherwise, which
no firewall rule could follow, so every port another node connects to is pinned with a flag. Flags and
defaults are from Ray's ``ray start`` reference (docs.ray.io/en/latest/cluster/cli.html) and its port
notes (docs.ray.io/en/latest/ray-core/configure.html, "Ports configurations";
docs.ray.io/en/master/ray-core/internals/port-service-discovery.html):

- the GCS (``--port``, head only, default 6379): every node and driver registers there;
- the raylet's node manager and object manager (``--node-manager-port``, ``--object-manager-port``,
  random by default): the GCS and other raylets call them, objects move between them;
- the dashboard agent (``--dashboard-agent-grpc-port`` random, ``--dashboard-agent-listen-port``
  52365): the dashboard on the head asks every node's agent for its state and logs;
- worker processes (``--min-worker-port``/``--max-worker-port``, 10002-19999 by default): the
  driver and other workers call a task's worker directly;
- the runtime-env agent and the metrics export port (random by default) are pinned too but only
  their own node's raylet or a local scraper talks to them, so the firewall does not open them;
- the dashboard (8265) listens on 127.0.0.1 of the head only (``--dashboard-host``): reach it with
  an SSH tunnel; the Ray client server (10001, head) is not opened either (the driver is on the head).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stacks.config import VM_VENV

GCS_PORT = 6379
NODE_MANAGER_PORT = 6380
OBJECT_MANAGER_PORT = 6381
RUNTIME_ENV_AGENT_PORT = 6382
DASHBOARD_AGENT_GRPC_PORT = 6383
DASHBOARD_AGENT_LISTEN_PORT = 6384
METRICS_EXPORT_PORT = 6385
MIN_WORKER_PORT = 10002
MAX_WORKER_PORT = 10999
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8265
# The object store is shared memory taken from the machine; nothing big travels through it (tasks
# get a run's description and return its outcome; run folders go to the bucket), so 2 GiB instead
# of Ray's default 30% of memory, which would be missing from the experiments' containers.
OBJECT_STORE_BYTES = 2 * 1024**3
# The custom resource that counts experiments per node (issue 13): the runner asks for one per run.
EXPERIMENT_SLOT = "experiment_slot"

RAY_UNIT_NAME = "llamaresttest-ray.service"
RAY_UNIT_PATH = f"/etc/systemd/system/{RAY_UNIT_NAME}"
RAY_BIN = f"{VM_VENV}/bin/ray"


def _ports(ports: Sequence[int | tuple[int, int]]) -> list[str]:
    return [str(p) if isinstance(p, int) else f"{p[0]}-{p[1]}" for p in ports]


# What the firewall opens (stacks/cluster.py): every node's ports, and the GCS on the head only.
NODE_PORTS: tuple[str, ...] = tuple(
    _ports(
        [
            NODE_MANAGER_PORT,
            OBJECT_MANAGER_PORT,
            DASHBOARD_AGENT_GRPC_PORT,
            DASHBOARD_AGENT_LISTEN_PORT,
            (MIN_WORKER_PORT, MAX_WORKER_PORT),
        ]
    )
)
HEAD_PORTS: tuple[str, ...] = (str(GCS_PORT), *NODE_PORTS)


def _common_flags() -> list[str]:
    return [
        f"--node-manager-port={NODE_MANAGER_PORT}",
        f"--object-manager-port={OBJECT_MANAGER_PORT}",
        f"--runtime-env-agent-port={RUNTIME_ENV_AGENT_PORT}",
        f"--dashboard-agent-grpc-port={DASHBOARD_AGENT_GRPC_PORT}",
        f"--dashboard-agent-listen-port={DASHBOARD_AGENT_LISTEN_PORT}",
        f"--metrics-export-port={METRICS_EXPORT_PORT}",
        f"--min-worker-port={MIN_WORKER_PORT}",
        f"--max-worker-port={MAX_WORKER_PORT}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
        # In the foreground, so systemd sees Ray die and starts it again.
        "--block",
    ]


def head_command() -> list[str]:
    """``ray start`` of the head: GCS and dashboard; no ``experiment_slot``, so no run lands there."""
    return [
        RAY_BIN,
        "start",
        "--head",
        f"--port={GCS_PORT}",
        f"--dashboard-host={DASHBOARD_HOST}",
        f"--dashboard-port={DASHBOARD_PORT}",
        *_common_flags(),
    ]


def worker_command(head_address: str, slots: int) -> list[str]:
    """``ray start`` of a worker: joins the head's GCS with ``slots`` experiment slots."""
    if slots < 1:
        raise ValueError(f"a worker needs at least one experiment slot, got {slots}")
    if not head_address or any(ch.isspace() or ch in "'\"\\" for ch in head_address):
        raise ValueError(f"not a head address: {head_address!r}")
    resources = json.dumps({EXPERIMENT_SLOT: slots}, separators=(",", ":"))
    return [
        RAY_BIN,
        "start",
        f"--address={head_address}:{GCS_PORT}",
        f"--resources={resources}",
        *_common_flags(),
    ]


@dataclass(frozen=True)
class RayNode:
    """One machine's part in the cluster: ``head`` or ``worker`` (with the head's internal address)."""

    role: str
    head_address: str = ""
    slots: int = 0

    def __post_init__(self) -> None:
        if self.role not in ("head", "worker"):
            raise ValueError(f"a Ray node is a head or a worker, not {self.role!r}")

    @property
    def command(self) -> list[str]:
        return head_command() if self.role == "head" else worker_command(self.head_address, self.slots)


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:=,@+-]+")


def _systemd_word(word: str) -> str:
    """One ExecStart word: as it is, or in single quotes (systemd takes a quoted word whole; ``$``
    and ``%`` would still be expanded and backslashes unescaped, so words with them are refused)."""
    if _PLAIN_WORD.fullmatch(word):
        return word
    if any(ch in word for ch in "'\\$%\n"):
        raise ValueError(f"{word!r} needs quoting that systemd's ExecStart does not do")
    return f"'{word}'"


def render_unit(node: RayNode) -> str:
    """The systemd unit that runs Ray on ``node``: started at boot, started again whenever it stops
    (a head that restarted, a worker that lost the head for a minute): so a rebooted or recreated
    worker joins by itself."""
    what = "head" if node.role == "head" else f"worker (joins {node.head_address}:{GCS_PORT})"
    exec_start = " ".join(_systemd_word(word) for word in node.command)
    return "\n".join(
        [
            "# Installed by the startup script (stacks/ray_nodes.py); the next boot overwrites it.",
            "[Unit]",
            f"Description=Ray {what} of the llamaresttest cluster",
            # Experiments run on this node's Docker engine; Ray's tasks drive it.
            "Requires=docker.service",
            "After=docker.service network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={exec_start}",
            f"ExecStop={RAY_BIN} stop",
            "Restart=always",
            "RestartSec=10",
            "Environment=PYTHONUNBUFFERED=1",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
    )
