"""One experiment's lifecycle: network, API container, readiness probe, tool container, budget,
stop (tool first, then the API with a grace period so recordings flush), logs, metadata, clean-up.

The readiness probe is an HTTP GET of the API's readiness path through the proxy port 9090 at the
API container's address on the experiment's own network. No host port is published (parallel
experiments would collide on it). On a host the bridge network is routable; when the runner itself
runs in a container (Docker socket mounted), it joins the experiment network for the experiment's
lifetime so the same address works, and leaves it before the network is removed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_runner.common import clock
from remote_runner.experiment import provenance
from remote_runner.experiment.catalog import Api, Tool
from remote_runner.experiment.docker_runtime import (
    LABEL_PREFIX,
    ContainerSpec,
    ContainerState,
    Docker,
    DockerError,
    Mount,
    engine_gone_reason,
    own_container_id,
)
from remote_runner.experiment.run_key import RunKey

PROXY_PORT = 9090
#: the run folder's subfolder mounted read-write into the tool container, and where it is mounted
TOOL_OUTPUT_DIR, TOOL_OUTPUT_MOUNT = "tool-output", "/tool-output"
#: the API container's network alias on its experiment's own network: the tool's HOST, whatever the
#: container's name (names reach 61 characters; urllib3 refuses host labels over 63)
API_ALIAS = "api"
TOOL_STOP_GRACE = 5.0
POLL_SECONDS = 1.0
PROBE_INTERVAL = 0.5
#: seconds between readings of each container's peak memory while the tool runs (a docker exec each)
PEAK_MEMORY_EVERY = 5.0

SUCCEEDED, FAILED, INTERRUPTED = "succeeded", "failed", "interrupted"

log = logging.getLogger("remote_runner.experiment.lifecycle")


@dataclass(frozen=True)
class ExperimentSpec:
    batch: str
    batch_id: str
    key: RunKey
    attempt: int
    run_dir: Path
    api: Api
    tool: Tool
    budget_seconds: float
    cpus: float
    api_cpuset: str | None
    tool_cpuset: str | None
    memory_bytes: int
    #: the batch's copy of the API's spec (remote_runner.experiment.specs), mounted read-only into the tool
    spec_file: Path
    stop_grace_seconds: float = 10.0
    coverage_interval: float = 5.0
    models_dir: Path = Path("/opt/llamaresttest/models")
    extra_labels: tuple[tuple[str, str], ...] = ()
    #: the spec in the tool's format (``Tool.spec_format``); None: ``spec_file``
    tool_spec_file: Path | None = None
    #: the base path of that spec (Swagger 2 ``basePath`` / OpenAPI 3 ``servers[0]``), "" for none
    base_path: str = ""
    #: the run's own seed (plan.run_seed), given to the tool as SEED; None: no seed
    seed: int | None = None
    #: the run's place in the batch's (shuffled) start order, from 0; None where unknown
    order: int | None = None
    #: extra environment of the tool container (settings' ``tool_env``, e.g. a preset's options)
    tool_env: tuple[tuple[str, str], ...] = ()
    #: the build arguments of the tool's image (tool.toml's, overridden by ``tool_build_args``)
    build_args: tuple[tuple[str, str], ...] = ()
    #: the batch's preset (remote_runner.batch.presets), None for none
    preset: str | None = None

    @property
    def base_name(self) -> str:
        raw = f"lrt-{self.batch_id[:8]}-{self.key.api}-{self.key.tool}-r{self.key.repetition}-a{self.attempt}"
        return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)

    def labels(self, role: str) -> dict[str, str]:
        return {
            **dict(self.extra_labels),
            f"{LABEL_PREFIX}.batch": self.batch,
            f"{LABEL_PREFIX}.batch_id": self.batch_id,
            f"{LABEL_PREFIX}.api": self.key.api,
            f"{LABEL_PREFIX}.tool": self.key.tool,
            f"{LABEL_PREFIX}.run": str(self.key.repetition),
            f"{LABEL_PREFIX}.attempt": str(self.attempt),
            f"{LABEL_PREFIX}.role": role,
        }


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# --- pure parts ----------------------------------------------------------------------------------
def container_specs(spec: ExperimentSpec, network: str) -> tuple[ContainerSpec, ContainerSpec]:
    """The API and tool containers of ``spec`` on ``network``."""
    base = spec.base_name
    api_name, tool_name = f"{base}-api", f"{base}-tool"
    common_env = {
        "API": spec.key.api,
        "TOOL": spec.key.tool,
        "RUN": str(spec.key.repetition),
        "TIME_BUDGET": f"{round(spec.budget_seconds)}",
    }
    api = ContainerSpec(
        name=api_name,
        image=spec.api.image,
        network=network,
        aliases=(api_name, API_ALIAS),
        labels=spec.labels("api"),
        env={**common_env, "COVERAGE_INTERVAL": f"{spec.coverage_interval:g}"},
        mounts=(Mount(spec.run_dir.resolve(), "/results"),),
        cpus=spec.cpus,
        cpuset=spec.api_cpuset,
        memory_bytes=spec.memory_bytes,
    )
    spec_file = (spec.tool_spec_file or spec.spec_file).resolve()
    mounts = [
        Mount(spec_file, f"/specifications/{spec_file.name}", read_only=True),
        # what the tool itself writes (e.g. EvoMaster's generated tests) ends up in the run folder
        Mount((spec.run_dir / TOOL_OUTPUT_DIR).resolve(), TOOL_OUTPUT_MOUNT),
    ]
    tool_env = {
        **common_env,
        "HOST": API_ALIAS,
        "PORT": str(PROXY_PORT),
        "BASE_URL": f"http://{API_ALIAS}:{PROXY_PORT}{spec.base_path}",
        "SPEC": f"/specifications/{spec_file.name}",
        "SPEC_FORMAT": spec.tool.spec_format,
        "CPUS": f"{spec.cpus:g}",
        "TOOL_OUTPUT": TOOL_OUTPUT_MOUNT,
        **dict(spec.tool_env),
    }
    if spec.seed is not None:
        tool_env["SEED"] = str(spec.seed)
    if spec.tool.needs_models:
        mounts.append(Mount(spec.models_dir.resolve(), "/models", read_only=True))
        tool_env["MODELS_DIR"] = "/models"
    tool = ContainerSpec(
        name=tool_name,
        image=spec.tool.image,
        network=network,
        labels=spec.labels("tool"),
        env=tool_env,
        mounts=tuple(mounts),
        cpus=spec.cpus,
        cpuset=spec.tool_cpuset,
        memory_bytes=spec.memory_bytes,
    )
    return api, tool


def classify(
    *,
    interrupted: bool,
    ready: bool | None,
    not_ready_reason: str | None,
    api: ContainerState | None,
    tool: ContainerState | None,
    api_died_early: bool,
    tool_ended_early: bool,
) -> tuple[str, str | None]:
    """The attempt's status and reason from what was observed. OOM wins over other explanations,
    because an OOM kill also shows as an early exit with code 137."""
    if tool is not None and tool.oom_killed:
        return FAILED, "tool out of memory"
    if api is not None and api.oom_killed:
        return FAILED, "api out of memory"
    if interrupted:
        return INTERRUPTED, "runner stopped"
    if ready is False:
        return FAILED, not_ready_reason or "api not ready"
    if api_died_early and api is not None:
        return FAILED, f"api exited early (exit {api.exit_code})"
    if tool_ended_early and tool is not None and tool.exit_code != 0:
        return FAILED, f"tool crashed (exit {tool.exit_code})"
    return SUCCEEDED, None


def set_aside(run_dir: Path, attempt: int) -> Path | None:
    """Moves everything of an earlier attempt in ``run_dir`` to ``attempts/attempt-<k>/`` whole, so no
    half-written run folder remains. Returns the new folder, or None when there was nothing."""
    if not run_dir.is_dir():
        return None
    leftovers = [p for p in run_dir.iterdir() if p.name != "attempts"]
    if not leftovers:
        return None
    target = run_dir / "attempts" / f"attempt-{attempt}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / "attempts" / f"attempt-{attempt}.{n}"
    target.mkdir(parents=True)
    for p in leftovers:
        shutil.move(str(p), str(target / p.name))
    return target


def probe_once(url: str, timeout: float = 2.0) -> bool:
    """Any HTTP answer below 500 means ready."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http to our container
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- provenance (remote_runner/experiment/provenance.py)
# ------------------------------------------------------
def _provenance_at_start(spec: ExperimentSpec, docker: Docker) -> dict[str, Any]:
    images = {
        role: provenance.image_facts(docker.image_info(image))
        for role, image in (("api", spec.api.image), ("tool", spec.tool.image))
    }
    models: list[dict[str, Any]] | None = None
    models_problem = None
    if spec.tool.needs_models:
        try:
            models = provenance.model_files(spec.models_dir, spec.run_dir.parents[2])
        except OSError as exc:
            models_problem = f"cannot read {spec.models_dir}: {exc}"
    return {
        "preset": spec.preset,
        "seed": spec.seed,
        "seed_given_to_tool": spec.seed is not None and spec.tool.accepts_seed,
        "order": spec.order,
        "tool_env": dict(spec.tool_env),
        "build_args": {"tool": dict(spec.build_args)},
        "images": images,
        "models": models,
        "models_problem": models_problem,
        "host": provenance.host(),
    }


def _cpu_seen(docker: Docker, name: str) -> dict[str, Any]:
    result = docker.exec(name, provenance.CPU_PROBE)
    if not result.ok:
        return {"count": None, "model": None, "kernel": None, "problem": result.tail(2)}
    return provenance.parse_cpu_probe(result.output)


def _peak_memory(
    docker: Docker, name: str, container_id: str, earlier: dict[str, Any] | None, *, final: bool
) -> dict[str, Any] | None:
    """The container's peak memory so far (its cgroup's own maximum), read on the host; at the end,
    where the host's cgroup files are not visible (a runner in a container), inside the container
    once. While the tool runs nothing is executed inside the containers: an exec'd process joins
    the container's cgroup and, near the memory limit, can change which process the OOM killer
    takes (a tool killed for memory then no longer shows OOMKilled). When nothing can be read (the
    container exited and its cgroup is gone), the last reading stands, and says so."""
    value = provenance.host_peak_memory(container_id)
    if value is not None:
        return {"bytes": value, "source": "the container's cgroup on the host"}
    if final:
        result = docker.exec(name, provenance.PEAK_MEMORY_PROBE)
        value = provenance.parse_peak_memory(result.output) if result.ok else None
        if value is not None:
            return {
                "bytes": value,
                "source": "the container's cgroup, read inside it just before it was stopped",
            }
    if earlier is not None and earlier.get("bytes") is not None:
        return {
            "bytes": earlier["bytes"],
            "source": "the container's cgroup on the host, last read while it ran "
            f"(every {PEAK_MEMORY_EVERY:g} s)",
        }
    if not final:
        return earlier
    return {"bytes": None, "problem": "not readable: the container had exited and its cgroup is gone"}


def _last_word(text: str) -> str:
    """The container id ``docker run --detach`` printed last ("" for none)."""
    words = text.split()
    return words[-1] if words else ""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- execution -----------------------------------------------------------------------------------
def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _state_of(states: list[ContainerState], name: str) -> ContainerState | None:
    return next((s for s in states if s.name == name), None)


def _save_logs(docker: Docker, logs_dir: Path, containers: list[tuple[str, str]]) -> None:
    """Saves ``<role>.log`` of each (name, role); a log docker cannot give is not written."""
    for name, role in containers:
        try:
            (logs_dir / f"{role}.log").write_text(docker.logs(name), encoding="utf-8")
        except DockerError as exc:
            log.error("cannot read the %s log: %s", role, exc)
        except OSError as exc:
            log.error("cannot save %s log: %s", role, exc)


def run(spec: ExperimentSpec, docker: Docker, stop: threading.Event) -> Outcome:
    """Runs one attempt of ``spec``. Never raises for Docker failures: they become the outcome."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    logs_dir = spec.run_dir / "logs"
    logs_dir.mkdir(exist_ok=True)
    (spec.run_dir / TOOL_OUTPUT_DIR).mkdir(exist_ok=True)
    network = f"{spec.base_name}-net"
    api_c, tool_c = container_specs(spec, network)
    meta: dict[str, Any] = {
        "batch": spec.batch,
        "api": spec.key.api,
        "tool": spec.key.tool,
        "run": spec.key.repetition,
        "attempt": spec.attempt,
        "budget_seconds": spec.budget_seconds,
        "limits": {"cpus_per_container": spec.cpus, "memory_bytes_per_container": spec.memory_bytes},
        "cpuset": {"api": spec.api_cpuset, "tool": spec.tool_cpuset},
        "containers": {"api": api_c.name, "tool": tool_c.name},
        "network": network,
        "images": {"api": spec.api.image, "tool": spec.tool.image},
        "image_ids": {"api": docker.image_id(spec.api.image), "tool": docker.image_id(spec.tool.image)},
        "start_utc": clock.utc_iso(),
        "provenance": _provenance_at_start(spec, docker),
    }
    created: list[str] = []
    network_made = False
    own = own_container_id()
    connected = False
    interrupted = False
    ready: bool | None = None
    not_ready_reason: str | None = None
    api_died_early = tool_ended_early = False
    stopped_by: str | None = None
    final: list[ContainerState] = []
    peaks: dict[str, dict[str, Any]] = {}
    docker_error: str | None = None
    engine_gone: str | None = None  # the reason, when the Docker engine stopped answering
    try:
        docker.create_network(network, {**dict(spec.extra_labels), **spec.labels("network")})
        network_made = True
        if own:
            docker.connect(network, own)
            connected = True
        ids = {"api": _last_word(docker.run(api_c))}
        created.append(api_c.name)
        ip = docker.ip_address(api_c.name, network)
        if not ip:
            raise RuntimeError(f"no address for {api_c.name} on {network}")
        url = f"http://{ip}:{PROXY_PORT}{spec.api.readiness_path}"
        begin = clock.monotonic()
        deadline = begin + spec.api.readiness_timeout
        ready = False
        not_ready_reason = f"api not ready after {spec.api.readiness_timeout:g} s"
        while not stop.is_set():
            if probe_once(url):
                ready = True
                meta["ready_after_seconds"] = round(clock.monotonic() - begin, 3)
                break
            state = _state_of(docker.states([api_c.name]), api_c.name)
            if state is not None and not state.running:
                not_ready_reason = f"api exited before it was ready (exit {state.exit_code})"
                break
            if clock.monotonic() >= deadline:
                break
            clock.wait(stop, PROBE_INTERVAL)
        if stop.is_set():
            interrupted = True
        elif ready:
            ids["tool"] = _last_word(docker.run(tool_c))
            created.append(tool_c.name)
            meta["tool_start_utc"] = clock.utc_iso()
            budget_end = clock.monotonic() + spec.budget_seconds
            # probed in the API container (the same CPU limit), never in the tool's: see _peak_memory
            meta["provenance"]["container_cpu"] = _cpu_seen(docker, api_c.name)
            next_peak = clock.monotonic() + PEAK_MEMORY_EVERY
            while True:
                if stop.is_set():
                    interrupted = True
                    break
                if clock.monotonic() >= next_peak:  # the peak so far, kept should a container exit
                    for name, role in ((tool_c.name, "tool"), (api_c.name, "api")):
                        seen = _peak_memory(docker, name, ids[role], peaks.get(role), final=False)
                        if seen is not None:
                            peaks[role] = seen
                    next_peak = clock.monotonic() + PEAK_MEMORY_EVERY
                states = docker.states([api_c.name, tool_c.name])
                api_s, tool_s = _state_of(states, api_c.name), _state_of(states, tool_c.name)
                if tool_s is not None and not tool_s.running:
                    tool_ended_early, stopped_by = True, "tool exited"
                    break
                if api_s is not None and not api_s.running:
                    api_died_early, stopped_by = True, "api exited"
                    break
                remaining = budget_end - clock.monotonic()
                if remaining <= 0:
                    stopped_by = "budget"
                    break
                clock.wait(stop, min(POLL_SECONDS, remaining))
            meta["tool_stop_utc"] = clock.utc_iso()
            peaks["tool"] = (
                _peak_memory(docker, tool_c.name, ids["tool"], peaks.get("tool"), final=True) or {}
            )
            docker.stop(tool_c.name, TOOL_STOP_GRACE)
        if api_c.name in created:
            peaks["api"] = _peak_memory(docker, api_c.name, ids["api"], peaks.get("api"), final=True) or {}
        docker.stop(api_c.name, spec.stop_grace_seconds)
        final = docker.states(created)
    except (DockerError, RuntimeError) as exc:
        docker_error = str(exc)
        if isinstance(exc, DockerError) and exc.engine_gone:
            engine_gone = engine_gone_reason(exc.result.output)
        log.error("%s attempt %d: %s", spec.key.label, spec.attempt, engine_gone or exc)
    finally:
        if engine_gone:
            # nothing answers: the scheduler waits for the engine and removes this attempt's containers
            # and network by label once it is back (docker commands now would only fail)
            log.warning(
                "%s attempt %d: interrupted, its containers are removed by label once the engine is back",
                spec.key.label,
                spec.attempt,
            )
        else:
            roles = ((api_c.name, "api"), (tool_c.name, "tool"))
            _save_logs(docker, logs_dir, [(n, r) for n, r in roles if n in created])
            if created and not final:
                try:
                    final = docker.states(created)
                except DockerError:
                    final = []
            if created:
                docker.remove(created)
            if connected and own:
                docker.disconnect(network, own)
            if network_made and not docker.remove_network(network):
                log.error("could not remove network %s", network)
    api_s, tool_s = _state_of(final, api_c.name), _state_of(final, tool_c.name)
    reason: str | None
    if engine_gone:
        # the engine went away: not the experiment's failure (the attempt is not counted)
        status, reason = INTERRUPTED, engine_gone
    elif docker_error and not interrupted:
        status, reason = FAILED, f"docker error: {docker_error}"
        if tool_s is not None and tool_s.oom_killed:
            status, reason = FAILED, "tool out of memory"
    else:
        status, reason = classify(
            interrupted=interrupted,
            ready=ready,
            not_ready_reason=not_ready_reason,
            api=api_s,
            tool=tool_s,
            api_died_early=api_died_early,
            tool_ended_early=tool_ended_early,
        )
    meta["provenance"]["peak_memory"] = peaks
    meta["provenance"]["tool_version"] = provenance.tool_version(
        _read_text(logs_dir / "tool.log"), meta["provenance"]["images"]["tool"], dict(spec.build_args)
    )
    meta.update(
        {
            "end_utc": clock.utc_iso(),
            "status": status,
            "reason": reason,
            "stopped_by": stopped_by,
            "exit_codes": {
                "api": api_s.exit_code if api_s else None,
                "tool": tool_s.exit_code if tool_s else None,
            },
            "oom_killed": {
                "api": bool(api_s and api_s.oom_killed),
                "tool": bool(tool_s and tool_s.oom_killed),
            },
        }
    )
    _write_json(spec.run_dir / "metadata.json", meta)
    return Outcome(status, reason, meta)
