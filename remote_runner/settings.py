"""The runner's settings: defaults < ``--config`` JSON file < command-line flags.

Parsing collects every problem instead of stopping at the first, so a user fixes a config file in one
go; :func:`validate` then checks the settings against the catalog, the machine and the results folder.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from remote_runner.catalog import Catalog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``3600``, ``"30s"``, ``"10m"`` or ``"1h"``; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"not a duration: {text!r} (use seconds, or 30s, 10m, 1h)")
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return value


def parse_disk_size(text: str | int) -> int:
    """Bytes from ``"0"``, ``"500m"``, ``"2g"`` (like :func:`parse_memory`, without its 6m minimum)."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int) or str(text).strip() == "0":
        if int(text) < 0:
            raise ValueError(f"size {text!r} is negative")
        return int(text)
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 0, 500m or 2g)")
    return int(float(match.group(1)) * _BYTES[match.group(2).lower()])


def parse_memory(text: str | int) -> int:
    """Bytes from ``"16g"``, ``"512m"``, ``"64M"`` or a plain number of bytes; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"not a memory size: {text!r}")
    if isinstance(text, int):
        value = text
    else:
        match = _MEMORY.match(str(text))
        if not match:
            raise ValueError(f"not a memory size: {text!r} (use e.g. 512m or 16g)")
        value = int(float(match.group(1)) * _BYTES[match.group(2).lower()])
    if value < 6 * 1024**2:
        raise ValueError(f"memory size {text!r} is below Docker's minimum of 6m")
    return value


@dataclass(frozen=True)
class Upload:
    bucket: str
    path: str = "llamaresttest-results"


@dataclass(frozen=True)
class Settings:
    catalog: Path = Path(".")
    results: Path = Path("./results")
    batch: str | None = None
    #: True when the batch was named on the command line (it must exist: resume only); a batch named
    #: in the config file is created when absent, else resumed (what the systemd unit needs).
    batch_must_exist: bool = False
    apis: tuple[str, ...] = ()  # empty: every API of the catalog
    tools: tuple[str, ...] = ()  # empty: every tool of the catalog
    runs: int = 1
    budget_seconds: float = 3600.0
    cpus_per_container: float = 8.0
    memory_per_container: str = "16g"
    min_free_cpus: float = 14.0
    #: free space the results disk must keep: below it nothing more is admitted (the batch pauses,
    #: and ends with the disk-full exit code once its running experiments are done); "0" switches it off
    min_free_disk: str = "1g"
    max_attempts: int = 3
    #: how long the runner waits for a Docker engine that went away mid-batch before it gives up with
    #: exit code 5 (exit_codes.ENGINE_UNAVAILABLE); the batch is resumable
    engine_wait_seconds: float = 600.0
    models_dir: Path = Path("/opt/llamaresttest/models")
    upload: Upload | None = None
    shutdown_when_done: bool = False
    build: bool = True
    stop_grace_seconds: float = 10.0  # docker stop -t for the API, so recordings flush
    coverage_interval: float = 5.0
    #: one short smoke run per selected API before the first real run (remote_runner.preflight)
    preflight: bool = True
    #: seconds of each smoke run (the tool's budget; readiness waits come on top)
    preflight_seconds: float = 30.0
    #: a broken API is left out of the batch instead of stopping it
    skip_broken_apis: bool = False
    #: extra labels on every container and network (e.g. to find a batch's containers with your tools)
    labels: tuple[tuple[str, str], ...] = ()
    #: per tool, build arguments over the tool's own ``[build_args]`` (e.g. a mirror of its source)
    tool_build_args: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    #: a run whose tool restarted more often than this fails verification (see verification.py)
    max_tool_restarts: int = 3
    #: cluster mode: the Ray cluster's address ("auto" or HOST:PORT); None: this machine only
    ray: str | None = None
    #: image registry prefix the cluster's nodes pull the images from (``<registry>/<image>``)
    registry: str | None = None

    @property
    def build_args_by_tool(self) -> dict[str, dict[str, str]]:
        return {tool: dict(args) for tool, args in self.tool_build_args}

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory_per_container)

    @property
    def min_free_disk_bytes(self) -> int:
        return parse_disk_size(self.min_free_disk)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple) and f.name not in ("labels", "tool_build_args"):
                value = list(value)
            elif f.name == "labels":
                value = dict(value)
            elif f.name == "tool_build_args":
                value = {tool: dict(args) for tool, args in value}
            elif isinstance(value, Upload):
                value = {"bucket": value.bucket, "path": value.path}
            out[f.name] = value
        return out


#: keys of the config file (and of plan.json's "settings"), with how to read each
CONFIG_KEYS = {f.name for f in fields(Settings)} - {"batch_must_exist"}


def _names(value: Any, key: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(f"{key}: expected a list of names or 'a,b', got {value!r}")
    return ()


def _coerce(key: str, value: Any, problems: list[str]) -> Any:
    try:
        if key in ("catalog", "results", "models_dir"):
            if not isinstance(value, str | Path) or not str(value):
                raise ValueError(f"expected a path, got {value!r}")
            return Path(value)
        if key == "batch":
            if value is None:
                return None
            if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
                raise ValueError(f"expected a batch folder name, got {value!r}")
            return value
        if key in ("ray", "registry"):
            if value is None:
                return None
            if not isinstance(value, str) or not value.strip() or "://" in value or value.endswith("/"):
                raise ValueError(
                    f"expected {'auto or HOST:PORT' if key == 'ray' else 'a registry prefix like '}"
                    f"{'' if key == 'ray' else '127.0.0.1:5000/llamaresttest'}, got {value!r}"
                )
            return value.strip()
        if key in ("apis", "tools"):
            return _names(value, key, problems)
        if key == "max_tool_restarts":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"expected a whole number of restarts (0 or more), got {value!r}")
            return value
        if key == "tool_build_args":
            if isinstance(value, tuple):
                return value
            if not isinstance(value, Mapping):
                raise ValueError(f'expected {{"<tool>": {{"ARG": "value"}}}}, got {value!r}')
            from remote_runner.catalog import check_build_args

            out = []
            for tool, table in sorted(value.items()):
                args, bad = check_build_args(table, f"tool_build_args.{tool}")
                problems.extend(bad)
                out.append((str(tool), tuple(sorted(args.items()))))
            return tuple(out)
        if key in ("runs", "max_attempts"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"expected a whole number, got {value!r}")
            number = int(value)
            if number < 1:
                raise ValueError(f"must be at least 1, got {value!r}")
            return number
        if key in (
            "budget_seconds",
            "stop_grace_seconds",
            "coverage_interval",
            "preflight_seconds",
            "engine_wait_seconds",
        ):
            return parse_duration(value)
        if key in ("cpus_per_container", "min_free_cpus"):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            amount = float(value)
            if amount < 0 or (key == "cpus_per_container" and amount < 0.01):
                raise ValueError(f"must be positive, got {value!r}")
            return amount
        if key == "memory_per_container":
            parse_memory(value)
            return str(value)
        if key == "min_free_disk":
            parse_disk_size(value)
            return str(value)
        if key == "upload":
            if value is None:
                return None
            if isinstance(value, Upload):
                return value
            if (
                not isinstance(value, Mapping)
                or not isinstance(value.get("bucket"), str)
                or not value["bucket"]
            ):
                raise ValueError(f'expected {{"bucket": "...", "path": "..."}}, got {value!r}')
            return Upload(
                bucket=value["bucket"], path=str(value.get("path", "llamaresttest-results")).strip("/")
            )
        if key == "labels":
            if isinstance(value, tuple):
                return value
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and k for k, v in value.items()
            ):
                raise ValueError(f'expected {{"key": "value", ...}}, got {value!r}')
            return tuple(sorted(value.items()))
        if key in ("shutdown_when_done", "build", "preflight", "skip_broken_apis"):
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
    except (TypeError, ValueError) as exc:
        problems.append(f"{key}: {exc}")
        return None
    problems.append(f"unknown setting {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
    return None


def merge(
    config: Mapping[str, Any] | None, flags: Mapping[str, Any], base: Settings | None = None
) -> tuple[Settings, list[str]]:
    """Defaults (or ``base``) < ``config`` (the JSON file's object) < ``flags`` (None = not given).

    Returns the settings and every problem found; values with a problem keep their default.
    """
    problems: list[str] = []
    settings = base or Settings()
    changes: dict[str, Any] = {}
    for source_name, source in (("config", config or {}), ("flag", flags)):
        for key, value in source.items():
            if value is None and source_name == "flag":
                continue
            coerced = _coerce(key, value, problems)
            if coerced is None and value is not None:
                continue
            changes[key] = coerced
    if flags.get("batch"):
        changes["batch_must_exist"] = True
    settings = replace(settings, **changes)
    if settings.stop_grace_seconds > 20:
        problems.append("stop_grace_seconds: at most 20 s, so a SIGTERM'd runner exits within 30 s")
    return settings, problems


def load_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, [f"--config {path}: no such file"]
    except (OSError, json.JSONDecodeError) as exc:
        return {}, [f"--config {path}: not valid JSON ({exc})"]
    if not isinstance(data, dict):
        return {}, [f"--config {path}: expected a JSON object"]
    return data, []


@dataclass(frozen=True)
class MachineFacts:
    cpus: int
    memory_bytes: int
    docker_problem: str | None = None  # None when an engine answers


@dataclass(frozen=True)
class Selection:
    apis: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def select(settings: Settings, catalog: Catalog) -> Selection:
    problems: list[str] = []
    apis = settings.apis or tuple(sorted(catalog.apis))
    tools = settings.tools or tuple(sorted(catalog.tools))
    for kind, chosen, known in (("API", apis, catalog.apis), ("tool", tools, catalog.tools)):
        if not known:
            folder = "apis" if kind == "API" else "tools"
            problems.append(f"no {kind} in {catalog.root / folder} (a {kind} is a folder with a Dockerfile)")
            continue
        for name in chosen:
            if name not in known:
                problems.append(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
    for name in apis:
        api = catalog.apis.get(name)
        problem = api.spec_problem() if api is not None else None
        if problem:
            problems.append(problem)
    return Selection(apis=apis, tools=tools, problems=tuple(problems))


def writable(folder: Path) -> str | None:
    """None when ``folder`` exists or can be created and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return (
            f"results folder {folder} is not writable ({exc.strerror or exc}); choose another with --results"
        )
    return None


def validate(settings: Settings, catalog: Catalog, machine: MachineFacts) -> tuple[Selection, list[str]]:
    """Every problem that would stop a batch, found before anything starts."""
    selection = select(settings, catalog)
    problems, _warnings = catalog.split_problems(selection.apis, selection.tools)
    problems.extend(selection.problems)
    # cluster mode: experiments run on the cluster's nodes, whose fit is checked against the cluster
    # itself (remote_runner.cluster.fit_problem), not against the driver's machine
    local = not settings.ray
    need_cpus = 2 * settings.cpus_per_container
    if local and need_cpus > machine.cpus:
        problems.append(
            f"an experiment needs {need_cpus:g} CPUs (2 containers x --cpus-per-container "
            f"{settings.cpus_per_container:g}) but this machine has {machine.cpus}: "
            "lower --cpus-per-container"
        )
    try:
        need_memory = 2 * settings.memory_bytes
        if local and need_memory > machine.memory_bytes:
            problems.append(
                f"an experiment needs {need_memory / 1024**3:.1f} GiB (2 containers x --memory-per-container "
                f"{settings.memory_per_container}) but this machine has "
                f"{machine.memory_bytes / 1024**3:.1f} GiB"
            )
    except ValueError as exc:
        problems.append(str(exc))
    if local and settings.min_free_cpus > machine.cpus:
        problems.append(
            f"--min-free-cpus {settings.min_free_cpus:g} exceeds this machine's {machine.cpus} CPUs: "
            "nothing could start"
        )
    results_problem = writable(settings.results)
    if results_problem:
        problems.append(results_problem)
    if machine.docker_problem:
        problems.append(machine.docker_problem)
    needs_models = any(catalog.tools[t].needs_models for t in selection.tools if t in catalog.tools)
    if local and needs_models and not settings.models_dir.is_dir():
        problems.append(
            f"models folder {settings.models_dir} missing (a selected tool needs models); set models_dir"
        )
    if settings.batch and settings.batch_must_exist and not (settings.results / settings.batch).is_dir():
        problems.append(f"--batch {settings.batch}: no such batch in {settings.results}")
    return selection, problems


def machine_facts(docker_problem: str | None) -> MachineFacts:
    import psutil

    return MachineFacts(
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=psutil.virtual_memory().total,
        docker_problem=docker_problem,
    )
