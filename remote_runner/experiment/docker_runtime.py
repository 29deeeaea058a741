"""The only module that talks to Docker, through the docker CLI and :func:`process.execute`.

The ``*_cmd`` functions are pure: they build argv lists from frozen dataclasses and are tested
against their exact output. :class:`Docker` executes them and turns results into plain values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from remote_runner.common.process import ProcessResult, execute

LABEL_PREFIX = "llamaresttest"
Executor = Callable[..., ProcessResult]


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False

    def arg(self) -> str:
        return f"type=bind,source={self.source},target={self.target}" + (
            ",readonly" if self.read_only else ""
        )


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    network: str
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    cpus: float | None = None
    cpuset: str | None = None  # "0-7": pinned; None: a --cpus quota only
    memory_bytes: int | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerState:
    name: str
    running: bool
    exit_code: int
    oom_killed: bool
    status: str
    started_at: str
    finished_at: str
    image_id: str
    error: str = ""
    container_id: str = ""

    @property
    def exited(self) -> bool:
        return not self.running and self.status in ("exited", "dead")


# --- pure command construction -------------------------------------------------------------------
def label_args(labels: Mapping[str, str]) -> list[str]:
    return [a for k, v in sorted(labels.items()) for a in ("--label", f"{k}={v}")]


def version_cmd() -> list[str]:
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def build_cmd(
    image: str,
    context: Path,
    labels: Mapping[str, str] | None = None,
    build_args: Mapping[str, str] | None = None,
) -> list[str]:
    # --force-rm: a failed step's intermediate container is removed too, not left behind
    args = [a for k, v in sorted((build_args or {}).items()) for a in ("--build-arg", f"{k}={v}")]
    return [
        "docker",
        "build",
        "--pull=false",
        "--force-rm",
        "-t",
        image,
        *label_args(labels or {}),
        *args,
        str(context),
    ]


def image_id_cmd(image: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", image]


def network_create_cmd(name: str, labels: Mapping[str, str]) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", *label_args(labels), name]


def network_rm_cmd(name: str) -> list[str]:
    return ["docker", "network", "rm", name]


def network_connect_cmd(network: str, container: str) -> list[str]:
    return ["docker", "network", "connect", network, container]


def network_disconnect_cmd(network: str, container: str) -> list[str]:
    return ["docker", "network", "disconnect", "--force", network, container]


def run_cmd(spec: ContainerSpec) -> list[str]:
    """``docker run --detach`` of ``spec``. Images are built locally, never pulled. Memory swap equals
    memory: an over-limit container is OOM-killed (and reported so) instead of swapping."""
    argv = ["docker", "run", "--detach", "--pull", "never", "--name", spec.name, "--network", spec.network]
    for alias in spec.aliases:
        argv += ["--network-alias", alias]
    argv += label_args(spec.labels)
    for key, value in sorted(spec.env.items()):
        argv += ["--env", f"{key}={value}"]
    for mount in spec.mounts:
        argv += ["--mount", mount.arg()]
    if spec.cpus is not None:
        argv += ["--cpus", f"{spec.cpus:g}"]
    if spec.cpuset:
        argv += ["--cpuset-cpus", spec.cpuset]
    if spec.memory_bytes is not None:
        argv += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
    return [*argv, spec.image, *spec.command]


def create_cmd(name: str, image: str, labels: Mapping[str, str]) -> list[str]:
    """A container that is never started: only a source for ``docker cp`` out of the image."""
    return ["docker", "create", "--pull", "never", "--name", name, *label_args(labels), image]


def cp_out_cmd(container: str, source: str, dest: Path) -> list[str]:
    """``docker cp`` of ``source`` (absolute, in the container) to the local ``dest``; a symbolic link
    is followed, so the file it points to is copied, not the link."""
    return ["docker", "cp", "--follow-link", f"{container}:{source}", str(dest)]


def inspect_cmd(names: Sequence[str]) -> list[str]:
    return ["docker", "container", "inspect", *names]


def stop_cmd(name: str, grace_seconds: float) -> list[str]:
    return ["docker", "stop", "-t", str(max(0, int(grace_seconds))), name]


def wait_cmd(name: str) -> list[str]:
    return ["docker", "wait", name]


def logs_cmd(name: str) -> list[str]:
    return ["docker", "logs", "--timestamps", name]


def logs_between_cmd(name: str, since: float, until: float) -> list[str]:
    """The container's log lines docker stamped from ``since`` to ``until`` (UTC epoch seconds)."""
    return ["docker", "logs", "--timestamps", "--since", f"{since:.6f}", "--until", f"{until:.6f}", name]


def rm_cmd(names: Sequence[str]) -> list[str]:
    return ["docker", "rm", "--force", "--volumes", *names]


def ps_by_label_cmd(label: str) -> list[str]:
    return ["docker", "ps", "--all", "--quiet", "--filter", f"label={label}"]


def networks_by_label_cmd(label: str) -> list[str]:
    return ["docker", "network", "ls", "--quiet", "--filter", f"label={label}"]


def parse_states(output: str) -> list[ContainerState]:
    states = []
    for item in json.loads(output):
        state = item.get("State", {})
        states.append(
            ContainerState(
                name=item.get("Name", "").lstrip("/"),
                running=bool(state.get("Running")),
                exit_code=int(state.get("ExitCode", 0)),
                oom_killed=bool(state.get("OOMKilled")),
                status=str(state.get("Status", "")),
                started_at=str(state.get("StartedAt", "")),
                finished_at=str(state.get("FinishedAt", "")),
                image_id=str(item.get("Image", "")),
                error=str(state.get("Error", "")),
                container_id=str(item.get("Id", "")),
            )
        )
    return states


def oom_killed_in_kernel_log(kernel_log: str, container_id: str) -> bool:
    """Whether the kernel's log says its OOM killer killed a process of ``container_id``'s memory
    cgroup (pure). The kernel writes ``oom-kill:...,oom_memcg=<cgroup>,task_memcg=<cgroup>,...`` with
    the container's id in the cgroup path (``/docker/<id>`` with the cgroupfs driver,
    ``docker-<id>.scope`` with systemd's)."""
    if len(container_id) < 12:
        return False
    return any("oom-kill:" in line and container_id in line for line in kernel_log.splitlines())


def with_kernel_oom(states: list[ContainerState], kernel_log: Callable[[], str]) -> list[ContainerState]:
    """Docker's ``OOMKilled`` where the engine saw the OOM kill, else the kernel's own word: seen here
    with dockerd 20.10 on cgroup v1 and a 6.x kernel, a container killed by its memory limit exited 137
    with ``OOMKilled`` false, while the kernel logged the kill. Only an exit 137 is checked."""
    suspects = [s for s in states if s.exit_code == 137 and not s.oom_killed and not s.running]
    if not suspects:
        return states
    text = kernel_log()
    return [
        replace(s, oom_killed=True) if s in suspects and oom_killed_in_kernel_log(text, s.container_id) else s
        for s in states
    ]


def container_ip(inspect_output: str, network: str) -> str | None:
    for item in json.loads(inspect_output):
        ip = item.get("NetworkSettings", {}).get("Networks", {}).get(network, {}).get("IPAddress")
        if ip:
            return str(ip)
    return None


#: what the docker client prints when no engine answers on its socket (the daemon stopped, restarting,
#: or its socket gone); lower case. Seen with the 20.10 and 28.x clients against a stopped dockerd.
_ENGINE_GONE_TEXTS = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "the daemon is shutting down",
    "docker.sock: connect: no such file or directory",
    "docker.sock: connect: connection refused",
)
#: the reason an attempt cut short by an engine outage is recorded with (it is interrupted, not failed)
ENGINE_GONE_REASON = "docker engine unavailable"


def is_engine_error(text: str | None) -> bool:
    """True when a docker command's output (or a reason built from it) says the engine itself is
    unreachable, as opposed to an error of the command (unknown image, name in use, ...)."""
    lower = (text or "").lower()
    return any(t in lower for t in _ENGINE_GONE_TEXTS) or lower.startswith(ENGINE_GONE_REASON)


def engine_gone_reason(text: str) -> str:
    """The one-line reason an attempt is interrupted with: the engine's error, without the noise."""
    line = next((x.strip() for x in text.splitlines() if is_engine_error(x)), text.strip())
    return f"{ENGINE_GONE_REASON}: {line}"[:300]


class DockerError(RuntimeError):
    def __init__(self, what: str, result: ProcessResult) -> None:
        detail = "timed out" if result.timed_out else f"exit {result.returncode}"
        super().__init__(f"{what} failed ({detail}): {result.tail(10)}")
        self.result = result

    @property
    def engine_gone(self) -> bool:
        """The engine did not answer (not the command's own failure)."""
        return is_engine_error(self.result.output)


# --- execution -----------------------------------------------------------------------------------
class Docker:
    """Runs the commands above. ``executor`` defaults to :func:`process.execute`."""

    def __init__(self, executor: Executor = execute, *, timeout: float = 120.0) -> None:
        self._execute = executor
        self.timeout = timeout

    def _run(self, argv: Sequence[str], *, timeout: float | None = None, what: str = "") -> str:
        result = self._execute(argv, timeout=timeout or self.timeout)
        if not result.ok:
            raise DockerError(what or " ".join(argv[:3]), result)
        return result.output

    def engine_problem(self) -> str | None:
        result = self._execute(version_cmd(), timeout=30)
        if result.ok:
            return None
        return (
            "no Docker engine answers (`docker version` failed): start the engine "
            "(e.g. `systemctl start docker` "
            f"or scripts/bootstrap.sh) and check you may use it\n    {result.tail(3)}"
        )

    def build(
        self,
        image: str,
        context: Path,
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> ProcessResult:
        return self._execute(build_cmd(image, context, labels, build_args), timeout=3 * 3600)

    def image_id(self, image: str) -> str | None:
        result = self._execute(image_id_cmd(image), timeout=60)
        return result.output.strip() if result.ok else None

    def image_info(self, image: str) -> dict[str, Any] | None:
        """``docker image inspect`` of ``image`` (Id, RepoDigests, Config.Labels, ...), None when absent."""
        result = self._execute(["docker", "image", "inspect", "--format", "{{json .}}", image], timeout=60)
        if not result.ok:
            return None
        try:
            data = json.loads(result.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
        return data if isinstance(data, dict) else None

    def exec(self, name: str, argv: Sequence[str], timeout: float = 30.0) -> ProcessResult:
        """Runs ``argv`` inside the running container ``name``; never raises (the result says)."""
        return self._execute(["docker", "exec", name, *argv], timeout=timeout)

    def create_network(self, name: str, labels: Mapping[str, str]) -> None:
        self._run(network_create_cmd(name, labels), what=f"creating network {name}")

    def remove_network(self, name: str) -> bool:
        return self._execute(network_rm_cmd(name), timeout=self.timeout).ok

    def run(self, spec: ContainerSpec) -> str:
        return self._run(run_cmd(spec), what=f"starting container {spec.name}").strip()

    def states(self, names: Sequence[str]) -> list[ContainerState]:
        states = parse_states(self._run(inspect_cmd(names), what="inspecting containers", timeout=60))
        return with_kernel_oom(states, self._kernel_log)

    def _kernel_log(self) -> str:
        """The kernel's ring buffer (``dmesg``; root on the VM), "" when it cannot be read."""
        result = execute(["dmesg"], timeout=30)
        return result.output if result.ok else ""

    def ip_address(self, name: str, network: str) -> str | None:
        return container_ip(self._run(inspect_cmd([name]), what=f"inspecting {name}", timeout=60), network)

    def stop(self, name: str, grace_seconds: float) -> bool:
        return self._execute(stop_cmd(name, grace_seconds), timeout=grace_seconds + 30).ok

    def wait(self, name: str, timeout: float) -> int:
        """Blocks until ``name`` exits; returns its exit code."""
        return int(
            self._run(wait_cmd(name), timeout=timeout, what=f"waiting for {name}").strip().splitlines()[-1]
        )

    def logs(self, name: str) -> str:
        """The container's log; raises DockerError when docker cannot give it (so an engine's
        "Cannot connect" is never saved as the container's log)."""
        return self._run(logs_cmd(name), timeout=120, what=f"reading the log of {name}")

    def logs_between(self, name: str, since: float, until: float) -> str:
        """The lines of the container's log stamped between ``since`` and ``until`` (UTC epoch seconds:
        docker's own timestamps, the host's clock); raises DockerError as :meth:`logs`."""
        return self._run(logs_between_cmd(name, since, until), timeout=60, what=f"reading the log of {name}")

    def remove(self, names: Sequence[str]) -> bool:
        return self._execute(rm_cmd(names), timeout=self.timeout).ok

    def connect(self, network: str, container: str) -> None:
        self._run(network_connect_cmd(network, container), what=f"connecting {container} to {network}")

    def disconnect(self, network: str, container: str) -> bool:
        return self._execute(network_disconnect_cmd(network, container), timeout=self.timeout).ok

    def copy_from_image(
        self, image: str, source: str, dest: Path, *, name: str, labels: Mapping[str, str]
    ) -> None:
        """Copies the file ``source`` out of ``image`` to ``dest`` through a created, never started
        container ``name``, removed whatever happens. Raises DockerError (naming image and path)."""
        what = f"copying {source} out of image {image}"
        self._run(create_cmd(name, image, labels), what=f"{what}: docker create")
        try:
            self._run(cp_out_cmd(name, source, dest), what=f"{what}: docker cp")
        finally:
            self.remove([name])

    def containers_with_label(self, label: str) -> list[str]:
        return self._run(ps_by_label_cmd(label), what="listing containers").split()

    def networks_with_label(self, label: str) -> list[str]:
        return self._run(networks_by_label_cmd(label), what="listing networks").split()

    def labelled_with(self, kind: str, label: str, keys: Sequence[str]) -> list[tuple[str, ...]]:
        """``(id, value of each key...)`` of every container or network carrying ``label``."""
        out = self._run(labelled_with_cmd(kind, label, keys), what=f"listing {kind}s")
        rows = []
        for line in out.splitlines():
            if line.strip():
                parts = line.split("\t")
                rows.append(tuple(parts + [""] * (len(keys) + 1 - len(parts))))
        return rows

    def pull(self, image: str) -> None:
        self._run(["docker", "pull", "-q", image], timeout=3600, what=f"pulling {image}")

    def tag(self, source: str, target: str) -> None:
        self._run(["docker", "tag", source, target], what=f"tagging {source} as {target}")

    def push(self, image: str) -> None:
        self._run(["docker", "push", "-q", image], timeout=3600, what=f"pushing {image}")

    def remove_labelled(self, label: str) -> tuple[list[str], list[str]]:
        """Removes every container, then every network, carrying ``label`` (``key=value``)."""
        containers = self.containers_with_label(label)
        if containers:
            self.remove(containers)
        networks = self.networks_with_label(label)
        for net in networks:
            self.remove_network(net)
        return containers, networks


def labelled_with_cmd(kind: str, label: str, keys: Sequence[str]) -> list[str]:
    """Lists ``kind`` (container or network) carrying ``label``, one line per object: its id, then
    the values of ``keys``, tab-separated."""
    fields = "\t".join(["{{.ID}}", *(f'{{{{.Label "{k}"}}}}' for k in keys)])
    if kind == "container":
        return ["docker", "ps", "-a", "--filter", f"label={label}", "--format", fields]
    return ["docker", "network", "ls", "--filter", f"label={label}", "--format", fields]


def own_container_id() -> str | None:
    """The id of the container this process runs in (runner inside a container with the Docker
    socket mounted), or None on a host. Docker sets the hostname to the short container id."""
    if not Path("/.dockerenv").exists():
        return None
    return os.environ.get("HOSTNAME") or None
