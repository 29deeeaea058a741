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
- the dashboard (8265) listens on every address of the head (``--dashboard-host=0.0.0.0``): the
  workers' dashboard agents report to it (on 127.0.0.1 they would post to their own loopback), the
  firewall admits it from the worker tag only, and token authentication guards it; operators still
  reach it through an SSH tunnel;
- the Ray client server (``--ray-client-server-port``, 10001, head) is pinned and never opened (the
  driver runs on the head); the autoscaler monitor's and the dashboard's Prometheus ports (44217 and
  44227, Ray's defaults, read from ``AUTOSCALER_METRIC_PORT`` and ``DASHBOARD_METRIC_PORT``) listen
  on 0.0.0.0 of the head and are pinned by the unit's environment; not opened either.

Measured (issue 19) with Ray 2.60: ``ray start --head`` with these flags, in a network namespace of
its own with a non-loopback node address, listened on exactly 6379-6385, 8265, 10001, 44217 and
44227 (plus worker processes in 10002-10999 once tasks run); nothing else.

Who may connect is enforced three ways: Google's firewall (stacks/cluster.py: tags only), Ray's
token authentication (``RAY_AUTH_MODE=token`` in every node's unit and the driver's; the token, a
Pulumi secret, reaches each node through its instance metadata and lives in a root-only file), and
on every node iptables rules that reject new TCP connections from Docker's bridges to every Ray port
(:func:`container_guard_rules`), so no experiment container reaches Ray on its own node or another.
"""

from __future__ import annotations

import json
import re
import shlex
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
RAY_CLIENT_SERVER_PORT = 10001
DASHBOARD_HOST = "0.0.0.0"  # noqa: S104 (the workers report to it; firewall + token, above)
DASHBOARD_PORT = 8265
# Ray's defaults (ray/autoscaler/_private/constants.py, ray/dashboard/consts.py), pinned through the
# environment variables Ray reads them from, so a future default cannot move them past the guard.
AUTOSCALER_METRIC_PORT = 44217
DASHBOARD_METRIC_PORT = 44227
# The object store is shared memory taken from the machine; nothing big travels through it (tasks
# get a run's description and return its outcome; run folders go to the bucket), so 2 GiB instead
# of Ray's default 30% of memory, which would be missing from the experiments' containers.
OBJECT_STORE_BYTES = 2 * 1024**3
# The custom resource that counts experiments per node (issue 13): the runner asks for one per run.
EXPERIMENT_SLOT = "experiment_slot"

RAY_UNIT_NAME = "llamaresttest-ray.service"
RAY_UNIT_PATH = f"/etc/systemd/system/{RAY_UNIT_NAME}"
RAY_BIN = f"{VM_VENV}/bin/ray"

# Token authentication (Ray >= 2.52; docs.ray.io/en/latest/ray-security/token-auth.html): Ray reads
# the mode and the token file from these variables. The mode is set explicitly on every node and the
# driver: a token file in ~/.ray alone turned authentication on for a head but not for a worker
# (issue 19, measured with Ray 2.60).
RAY_TOKEN_METADATA_KEY = "ray-auth-token"  # noqa: S105 (the metadata key, not the token)
RAY_TOKEN_PATH = "/etc/llamaresttest/ray-token"  # noqa: S105 (where the token is kept, not it)
RAY_AUTH_ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("RAY_AUTH_MODE", "token"),
    ("RAY_AUTH_TOKEN_PATH", RAY_TOKEN_PATH),
)

# The guards against experiment containers, installed by the startup script and again by the Ray
# unit's ExecStartPre (after a reboot the rules are gone until something puts them back).
GUARD_SCRIPT_PATH = "/usr/local/sbin/llamaresttest-guards"
GUARD_COMMENT = "llamaresttest-ray-guard"
# Docker's default bridge and its user-defined networks (br-<id>); iptables' "+" is a prefix match.
DOCKER_BRIDGES = ("docker0", "br-+")


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
# The head adds the GCS and the dashboard (the workers' agents report to it).
HEAD_PORTS: tuple[str, ...] = (str(GCS_PORT), str(DASHBOARD_PORT), *NODE_PORTS)


def ray_guard_ports() -> list[str]:
    """Every port Ray listens on under this stack's flags, head and worker alike, in iptables'
    ``--dport`` form ("6379", "10002:10999"): the firewall's ports and those no other node may use
    (runtime-env agent, metrics, client server, Prometheus ports). A port a node does not listen on
    costs a rule and nothing else."""
    return [
        str(port)
        for port in (
            GCS_PORT,
            NODE_MANAGER_PORT,
            OBJECT_MANAGER_PORT,
            RUNTIME_ENV_AGENT_PORT,
            DASHBOARD_AGENT_GRPC_PORT,
            DASHBOARD_AGENT_LISTEN_PORT,
            METRICS_EXPORT_PORT,
            DASHBOARD_PORT,
            RAY_CLIENT_SERVER_PORT,
            AUTOSCALER_METRIC_PORT,
            DASHBOARD_METRIC_PORT,
        )
    ] + [f"{MIN_WORKER_PORT}:{MAX_WORKER_PORT}"]


_DPORT = re.compile(r"([0-9]{1,5})(?::([0-9]{1,5}))?")


def container_guard_rules(tcp_ports: Sequence[str]) -> list[list[str]]:
    """iptables rules (argument vectors without ``iptables`` and without the action) that reject new
    TCP connections from Docker's bridges to ``tcp_ports`` ("6379" or a range "10002:10999").

    Each vector starts with its chain, so ``iptables -w 5 -C *rule`` checks it, ``-I *rule`` inserts
    it at the top and ``-D *rule`` deletes it:

    - ``INPUT``: a container connecting to the host's own addresses (its bridge's gateway, the VM's
      internal address): the host's Ray;
    - ``DOCKER-USER`` (Docker's chain in FORWARD, never flushed by Docker;
      docs.docker.com/network/packet-filtering-firewalls): a container connecting to another host
      (another node's Ray). ``! -o <bridge>`` leaves traffic that stays on its own bridge alone, so
      two containers of one experiment network still talk to each other on any port.

    Only NEW connections (conntrack), so nothing the host itself opened towards a container is cut;
    REJECT with a TCP reset, so a probe fails at once instead of timing out. Every rule carries the
    comment ``llamaresttest-ray-guard`` so it can be listed and removed.
    """
    rules: list[list[str]] = []
    for port in tcp_ports:
        match = _DPORT.fullmatch(port)
        if match is None or not all(0 < int(p) < 65536 for p in match.groups() if p is not None):
            raise ValueError(f"not a TCP port or range (N or N:M): {port!r}")
        if match.group(2) is not None and int(match.group(1)) > int(match.group(2)):
            raise ValueError(f"a port range runs upwards: {port!r}")
    for chain in ("INPUT", "DOCKER-USER"):
        for bridge in DOCKER_BRIDGES:
            for port in tcp_ports:
                out = ["!", "-o", bridge] if chain == "DOCKER-USER" else []
                rules.append(
                    [
                        chain,
                        "-i",
                        bridge,
                        *out,
                        "-p",
                        "tcp",
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW",
                        "--dport",
                        port,
                        "-m",
                        "comment",
                        "--comment",
                        GUARD_COMMENT,
                        "-j",
                        "REJECT",
                        "--reject-with",
                        "tcp-reset",
                    ]
                )
    return rules


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
        f"--ray-client-server-port={RAY_CLIENT_SERVER_PORT}",
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


def auth_environment() -> str:
    """The token variables as a systemd ``Environment=`` value (Ray's unit here, the runner's unit
    on a cluster head in stacks/systemd.py)."""
    return " ".join(f"{key}={value}" for key, value in RAY_AUTH_ENVIRONMENT)


def render_guard_script(metadata_rule: Sequence[str]) -> str:
    """The script that installs the guards, each rule only when ``iptables -C`` does not find it:
    ``metadata_rule`` (``DOCKER-USER`` + remote_runner.experiment.metadata_guard's rule) and the Ray guard of
    :func:`container_guard_rules` over :func:`ray_guard_ports`. Run by the startup script after
    Docker is up and by the Ray unit's ExecStartPre."""
    rules = [list(metadata_rule), *container_guard_rules(ray_guard_ports())]
    lines = [
        "#!/bin/bash",
        "# Installed by the llamaresttest startup script (stacks/ray_nodes.py render_guard_script);",
        "# the next boot overwrites it. Keeps experiment containers (on Docker bridges) off the metadata",
        "# server and off every Ray port of this node and of the others. Idempotent.",
        "set -euo pipefail",
        "added=0",
        "ensure_rule() {",
        '  if iptables -w 5 -C "$@" 2>/dev/null; then',
        "    return 0",
        "  fi",
        '  iptables -w 5 -n -L "$1" >/dev/null 2>&1 || iptables -w 5 -N "$1"',
        '  iptables -w 5 -I "$@"',
        "  added=$((added + 1))",
        "}",
        *(f"ensure_rule {shlex.join(rule)}" for rule in rules),
        f'echo "llamaresttest guards: $added of {len(rules)} rules added, the others were in place"',
        "",
    ]
    return "\n".join(lines)


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
            # Before Ray (and so before any experiment container it starts): containers can reach
            # neither the metadata server nor any Ray port. After a reboot the rules are gone until
            # this runs; the startup script installs them too, later in the boot.
            f"ExecStartPre={GUARD_SCRIPT_PATH}",
            f"ExecStart={exec_start}",
            f"ExecStop={RAY_BIN} stop",
            "Restart=always",
            "RestartSec=10",
            "Environment=PYTHONUNBUFFERED=1",
            f"Environment={auth_environment()}",
            f"Environment=AUTOSCALER_METRIC_PORT={AUTOSCALER_METRIC_PORT} "
            f"DASHBOARD_METRIC_PORT={DASHBOARD_METRIC_PORT}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
    )
