"""The systemd unit that runs the batch on the VM, and the service-manager commands deploy sends.

Everything here is pure: the unit text is rendered from a template file, and commands are argv lists;
:mod:`stacks.deploy` executes them over SSH. The unit runs exactly :func:`runner_command`, which is
also the command the tests run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from string import Template

UNIT_NAME = "llamaresttest-parallel.service"
DEFAULT_REMOTE_ROOT = "/opt/llamaresttest"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
# The runner interrupts its experiments on SIGTERM (each container's own stop grace, final coverage
# sample and traffic flush); systemd's 90 s default is kept as an explicit floor well above 40 s.
DEFAULT_TIMEOUT_STOP_SEC = 90
MIN_TIMEOUT_STOP_SEC = 40

_TEMPLATE = Path(__file__).parent / "templates" / f"{UNIT_NAME}.tmpl"


def venv_python(remote_root: str) -> str:
    return f"{remote_root}/venv/bin/python"


def config_path(remote_root: str) -> str:
    return f"{remote_root}/current/experiment.json"


def runner_command(remote_root: str = DEFAULT_REMOTE_ROOT) -> list[str]:
    """The runner's start command (the unit's ExecStart), run from ``<remote_root>/current``."""
    return [venv_python(remote_root), "-m", "remote_runner", "run", "--config", config_path(remote_root)]


def guard_command(remote_root: str = DEFAULT_REMOTE_ROOT) -> list[str]:
    """Installs the rule keeping experiment containers off the metadata server (ExecStartPre)."""
    return [venv_python(remote_root), "-m", "remote_runner.experiment.metadata_guard"]


def ray_environment(cluster: bool) -> str:
    """The unit's line for Ray: on a cluster head the driver authenticates with the cluster's token
    (the same two variables as every node's Ray unit, stacks/ray_nodes.py); the one VM has no Ray."""
    if not cluster:
        return "# One VM: no Ray cluster, no Ray token."
    from stacks.ray_nodes import auth_environment  # pure; imported here to keep this module light

    return (
        "# The driver joins the cluster's Ray with its token (root-only file from the instance metadata).\n"
        f"Environment={auth_environment()}"
    )


def render_unit(
    remote_root: str = DEFAULT_REMOTE_ROOT,
    timeout_stop_sec: int = DEFAULT_TIMEOUT_STOP_SEC,
    *,
    cluster: bool = False,
) -> str:
    if timeout_stop_sec < MIN_TIMEOUT_STOP_SEC:
        raise ValueError(f"TimeoutStopSec must be at least {MIN_TIMEOUT_STOP_SEC} s, got {timeout_stop_sec}")
    if not remote_root.startswith("/") or any(ch.isspace() for ch in remote_root):
        raise ValueError(f"remote root must be an absolute path without spaces, got {remote_root!r}")
    return Template(_TEMPLATE.read_text()).substitute(
        remote_root=remote_root,
        exec_start=shlex.join(runner_command(remote_root)),
        guard_start=shlex.join(guard_command(remote_root)),
        timeout_stop_sec=str(timeout_stop_sec),
        ray_environment=ray_environment(cluster),
    )


def unit_path(unit_dir: str = DEFAULT_UNIT_DIR) -> str:
    return f"{unit_dir}/{UNIT_NAME}"


def daemon_reload() -> list[str]:
    return ["systemctl", "daemon-reload"]


def enable() -> list[str]:
    return ["systemctl", "enable", UNIT_NAME]


def disable() -> list[str]:
    return ["systemctl", "disable", UNIT_NAME]


def start() -> list[str]:
    return ["systemctl", "start", UNIT_NAME]


def restart() -> list[str]:
    return ["systemctl", "restart", UNIT_NAME]


def try_restart() -> list[str]:
    """Restarts the unit only if it is running (a batch the operator started picks up a new release)."""
    return ["systemctl", "try-restart", UNIT_NAME]


def stop() -> list[str]:
    return ["systemctl", "stop", UNIT_NAME]


def is_active() -> list[str]:
    return ["systemctl", "is-active", "--quiet", UNIT_NAME]


def status_command() -> list[str]:
    """Operator's view of the unit (for docs and outputs)."""
    return ["systemctl", "status", "--no-pager", UNIT_NAME]


def logs_command() -> list[str]:
    return ["journalctl", "-u", UNIT_NAME, "-f", "-n", "200", "--no-pager"]
