"""The stack's configuration: read once, validated completely, then frozen.

``build_config`` is pure: it turns raw values (strings as Pulumi stores them, or already-typed
values) into a :class:`StackConfig`, or raises one :class:`ConfigError` that lists every problem
with its fix. ``load_config`` is the thin edge that reads ``pulumi.Config`` and the catalog folders.
Nothing is declared before the config has passed, so a bad stack costs nothing.

Two targets (``target``): ``gcp`` (the VM) and ``local`` (this workstation's Docker engine). For
``local`` the Google Cloud keys are neither required nor checked; instead the two local folders are
checked on disk (:func:`local_dir_problems`, the only part of ``build_config`` that looks at the file
system) and the machine is this one (:func:`this_machine`, read by ``load_config``).

Every key, its default and its meaning are documented in README.md ("Config keys"); a test keeps the
two in step.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pulumi.errors import RunError

from remote_runner.batch import settings as runner_schema
from remote_runner.cloud import pricing
from stacks.machines import (
    MACHINE_TYPES,
    MachineType,
    experiment_needs,
    experiment_slots,
    family_of,
    hourly_cost_in,
)
from stacks.network import ssh_range_problems

NAMESPACE = "llamaresttest"

# Paths on the VM, shared by the startup script, the runner settings and the deploy step
# (docs/contracts.md, "VM paths").
VM_ROOT = "/opt/llamaresttest"
VM_MODELS_DIR = f"{VM_ROOT}/models"
VM_RESULTS_DIR = f"{VM_ROOT}/results"
VM_RELEASES_DIR = f"{VM_ROOT}/releases"
VM_CURRENT_LINK = f"{VM_ROOT}/current"
VM_VENV = f"{VM_ROOT}/venv"
VM_STATE_DIR = "/var/lib/llamaresttest"
VM_READY_MARKER = f"{VM_STATE_DIR}/startup.ready"
VM_FAILED_MARKER = f"{VM_STATE_DIR}/startup.failed"
VM_STARTUP_LOG = "/var/log/llamaresttest-startup.log"
MODEL_FILES = ("ex.gguf", "ipd.gguf")

# The 11 services of the LlamaRestTest / ARAT-RL evaluations: the default batch.
BENCHMARK_APIS = (
    "blog",
    "features-service",
    "genome-nexus",
    "languagetool",
    "market",
    "ncs",
    "person-controller",
    "project-tracking-system",
    "restcountries",
    "scs",
    "user-management",
)
DEFAULT_TOOLS = ("llamaresttest",)
DISK_TYPES = ("pd-balanced", "pd-standard", "pd-ssd")
TARGETS = ("gcp", "local")
# Two ~5 GB models, the images of 11 Java services and a tool with llama.cpp, and the results.
MIN_DISK_GB = 50
# Example values in Pulumi.dev.yaml start with this; a stack that still has one is not ready.
PLACEHOLDER_PREFIX = "change-me"

DEFAULTS: Mapping[str, Any] = {
    "target": "gcp",
    "machineType": "n1-standard-32",
    "diskSizeGb": 100,
    "diskType": "pd-balanced",
    "spot": False,
    "maxRunHours": 24,
    "network": "default",
    "staticIp": None,  # the value of spot: a spot VM restarts often, and keeps its address
    "modelsBucket": None,
    "modelsPath": "LlamaRestTest",
    "resultsBucket": None,  # the models bucket
    "resultsPath": "llamaresttest-results",
    "sshSourceRanges": None,
    "allowSshFromAnywhere": False,
    "sshUser": "llamaresttest",
    "apis": BENCHMARK_APIS,
    "tools": DEFAULT_TOOLS,
    # a research protocol by name (remote_runner/batch/presets.py): its settings become the runner's
    # defaults; the keys below that the stack sets explicitly override them
    "preset": None,
    "runsPerCombination": 1,
    "timeBudgetMinutes": 60,
    "cpusPerContainer": 8,
    "memoryPerContainerGb": 16,
    "minFreeCpus": 14,
    "autoStart": False,
    "uploadResults": True,
    "shutdownWhenDone": None,  # true on gcp (a stopped VM costs only its disk), false elsewhere
    # Cluster mode (docs/cluster.md): 0 is the one-VM stack; N > 0 a head VM and N Ray workers.
    "workers": 0,
    "workerMachineType": "n1-standard-32",
    "workerSpot": True,
    "headMachineType": "n1-standard-4",
    # Cluster only: the batch admits no run this cap cannot pay for (remote_runner/cloud/spend.py); 0 = none.
    "maxCostUsd": 0,
    # Cluster only: bake Docker, the venv and the base images into the workers' boot image
    # (stacks/worker_image.py; docs/cluster.md, "Baked worker image").
    "bakeWorkerImage": False,
    # Cluster only: how long the head waits for a first worker (a spot stockout, a quota shortfall)
    # before it releases the group and powers off (the runner's worker_wait_seconds, exit 8).
    "workerWaitMinutes": 30,
    # target local only: folders on this machine (relative paths are relative to the project).
    "localResultsDir": "results",
    "localModelsDir": None,
}
LOCAL_MACHINE_NAME = "this machine"
KNOWN_KEYS = frozenset(DEFAULTS)
DEFAULT_ZONE = "us-central1-a"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_ZONE_RE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_OBJECT_PATH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


class ConfigError(RunError):
    """The stack config has problems; ``problems`` lists each one with how to fix it.

    A RunError, so the Pulumi CLI prints the message alone, without a Python traceback.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"the stack configuration has {len(self.problems)} problem(s); nothing was created:\n{lines}"
        )


@dataclass(frozen=True)
class StackConfig:
    """A validated stack. Field names are the snake_case of the config keys (docs/stacks.md)."""

    project: str  # the Pulumi project, "llamaresttest"
    stack: str
    target: str
    gcp_project: str
    region: str
    zone: str
    machine: MachineType
    disk_size_gb: int
    disk_type: str
    spot: bool
    max_run_hours: float  # 0: no limit
    network: str
    static_ip: bool
    models_bucket: str
    models_path: str
    results_bucket: str
    results_path: str
    ssh_source_ranges: tuple[str, ...]
    allow_ssh_from_anywhere: bool
    ssh_user: str
    apis: tuple[str, ...]
    tools: tuple[str, ...]
    runs_per_combination: int
    time_budget_minutes: int
    cpus_per_container: float
    memory_per_container_gb: float
    min_free_cpus: float
    auto_start: bool
    upload_results: bool
    shutdown_when_done: bool
    # target local only (None on gcp): absolute folders on this machine.
    local_results_dir: Path | None = None
    local_models_dir: Path | None = None
    # Cluster mode (docs/cluster.md). With workers == 0 the two machines below are unused, and with
    # workers > 0 ``machine`` and ``spot`` are: the head is ``head_machine`` on demand, the workers
    # ``worker_machine`` (spot per ``worker_spot``).
    workers: int = 0
    worker_machine: MachineType | None = None
    worker_spot: bool = True
    head_machine: MachineType | None = None
    max_cost_usd: float = 0.0
    bake_worker_image: bool = False
    worker_wait_minutes: float = 30.0
    # the runner's preset (None: none) and the stack keys set explicitly (a preset's setting is
    # passed to the runner only where the stack set its key: the stack's defaults do not override it)
    preset: str | None = None
    explicit_keys: frozenset[str] = frozenset()

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    @property
    def is_cluster(self) -> bool:
        return self.workers > 0

    @property
    def vm_machine(self) -> MachineType:
        """The machine of the one VM the deploy reaches: the head in a cluster, else ``machine``."""
        return self.head_machine if self.is_cluster and self.head_machine is not None else self.machine

    @property
    def machine_type(self) -> str:
        return self.vm_machine.name

    @property
    def worker_slots(self) -> int:
        """Experiments one worker runs at once: the same rule as one VM (``experiment_slots``)."""
        if self.worker_machine is None:
            return 0
        return experiment_slots(
            self.worker_machine, self.cpus_per_container, self.memory_per_container_gb, self.min_free_cpus
        )

    @property
    def experiment_slots(self) -> int:
        if self.is_cluster:
            return self.workers * self.worker_slots
        return experiment_slots(
            self.machine, self.cpus_per_container, self.memory_per_container_gb, self.min_free_cpus
        )

    @property
    def worker_family(self) -> str:
        """The one machine family of the batch's workers (``n2d`` for n2d-standard-32); runs record it."""
        return family_of(self.worker_machine.name) if self.worker_machine is not None else ""

    @property
    def hourly_cost_usd(self) -> float:
        """List price per hour of the machines in the stack's region (remote_runner/cloud/pricing.py): one VM,
        or the on-demand head plus every worker. A local stack's machine has no price (0)."""
        if self.is_local:
            return self.machine.hourly_cost(spot=self.spot)
        if self.is_cluster and self.worker_machine is not None and self.head_machine is not None:
            worker = hourly_cost_in(self.worker_machine, self.region, spot=self.worker_spot)
            return hourly_cost_in(self.head_machine, self.region, spot=False) + self.workers * worker
        return hourly_cost_in(self.machine, self.region, spot=self.spot)

    @property
    def registry_host(self) -> str:
        """Artifact Registry's Docker host of the stack's region."""
        return f"{self.region}-docker.pkg.dev"

    @property
    def registry_repository(self) -> str:
        """The Artifact Registry repository id of a cluster stack (one per stack)."""
        return self.resource_prefix

    @property
    def registry(self) -> str:
        """Image prefix the head pushes to and the workers pull from: ``<registry>/<image>``."""
        return f"{self.registry_host}/{self.gcp_project}/{self.registry_repository}"

    @property
    def worker_group(self) -> str:
        """Name of the workers' managed instance group."""
        return f"{self.resource_prefix}-workers"

    @property
    def models_url(self) -> str:
        return f"gs://{self.models_bucket}/{self.models_path}/"

    @property
    def results_url(self) -> str:
        return f"gs://{self.results_bucket}/{self.results_path}/"

    @property
    def resource_prefix(self) -> str:
        """Base of cloud resource names: lower case, letters, digits and dashes, <= 40 chars."""
        return resource_name(f"{self.project}-{self.stack}", 40)


def resource_name(text: str, limit: int) -> str:
    """``text`` as a GCE name: starts with a letter, [a-z0-9-], no trailing dash, at most ``limit``.

    A name that has to be shortened ends with a hash of the whole, so two long stack names that
    share a beginning still get different resources.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"x-{name}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


def memory_bytes(gb: float) -> int:
    """``memoryPerContainerGb`` as the runner's bytes (Docker's "g" is a GiB)."""
    return round(gb * 1024**3)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


#: the stack keys each runner setting comes from (the first is named in a problem the runner's
#: schema finds; a problem of any of them found by the stack's own checks already says it all)
_RUNNER_SOURCES: Mapping[str, tuple[str, ...]] = {
    "results": ("localResultsDir",),
    "apis": ("apis",),
    "tools": ("tools",),
    "runs": ("runsPerCombination",),
    "budget_seconds": ("timeBudgetMinutes",),
    "cpus_per_container": ("cpusPerContainer",),
    "memory_per_container": ("memoryPerContainerGb",),
    "min_free_cpus": ("minFreeCpus",),
    "models_dir": ("localModelsDir",),
    "upload": ("resultsBucket", "modelsBucket", "resultsPath"),
    "shutdown_when_done": ("shutdownWhenDone",),
    "max_cost_usd": ("maxCostUsd",),
    "worker_wait_seconds": ("workerWaitMinutes",),
    "preset": ("preset",),
}
#: what to set instead, where the stack's own check is looser than the runner's
_RUNNER_FIXES: Mapping[str, str] = {
    "memoryPerContainerGb": "at least 0.006 (6 MiB, Docker's minimum)",
    "cpusPerContainer": "at least 0.01",
}


def _runner_values(cfg: StackConfig, project_root: Path | None) -> dict[str, Any]:
    """The runner settings this stack decides, before the runner's schema has read them."""
    local = cfg.is_local and cfg.local_results_dir is not None
    values: dict[str, Any] = {
        "catalog": str(project_root.resolve()) if local and project_root is not None else VM_CURRENT_LINK,
        "results": str(cfg.local_results_dir) if local else VM_RESULTS_DIR,
        "batch": None,
        "apis": list(cfg.apis),
        "tools": list(cfg.tools),
        "runs": cfg.runs_per_combination,
        "budget_seconds": cfg.time_budget_minutes * 60,
        "cpus_per_container": _number(cfg.cpus_per_container),
        "memory_per_container": memory_bytes(cfg.memory_per_container_gb),
        "min_free_cpus": _number(cfg.min_free_cpus),
        "models_dir": VM_MODELS_DIR,
        "shutdown_when_done": cfg.shutdown_when_done,
    }
    if local:
        if cfg.local_models_dir is not None:
            values["models_dir"] = str(cfg.local_models_dir)
        else:
            del values["models_dir"]
    if cfg.preset is not None:
        values["preset"] = cfg.preset
        from remote_runner.batch.presets import PRESETS

        chosen = PRESETS.get(cfg.preset)
        for name in chosen.settings if chosen is not None else ():
            sources = _RUNNER_SOURCES.get(name, ())
            if name in values and not set(sources) & cfg.explicit_keys:
                del values[name]  # the stack's default gives way to the preset's value
    if cfg.upload_results:
        values["upload"] = {"bucket": cfg.results_bucket, "path": cfg.results_path}
    if cfg.is_cluster:
        # The driver on the head joins the Ray head the startup script runs there; images go to the
        # stack's registry; the runner sizes the worker group (created at 0) to what the batch can use
        # and releases it when nothing is pending (remote_runner/placement/workers.py).
        values["ray"] = "auto"
        values["registry"] = cfg.registry
        values["worker_group"] = {
            "project": cfg.gcp_project,
            "zone": cfg.zone,
            "name": cfg.worker_group,
            "size": cfg.workers,  # the most the runner asks for (the group is created at 0)
            "slots": max(1, cfg.worker_slots),  # 0 is refused by its own check, with its fix
        }
        if cfg.worker_machine is not None:  # a resume on another family is refused (one per batch)
            values["worker_group"]["machine_type"] = cfg.worker_machine.name
        # each worker fetches the models before its first run of a tool that needs them; the head
        # (and a worker that never runs such a tool) fetches none (remote_runner/experiment/models.py)
        values["models_source"] = {"bucket": cfg.models_bucket, "path": cfg.models_path}
        values["worker_wait_seconds"] = _number(round(cfg.worker_wait_minutes * 60, 3))
        if cfg.max_cost_usd > 0:  # what the cap counts: the stack's prices in its region (pricing.py)
            assert cfg.head_machine is not None and cfg.worker_machine is not None
            values["max_cost_usd"] = cfg.max_cost_usd
            values["cost_rates"] = {
                "head_usd_per_hour": hourly_cost_in(cfg.head_machine, cfg.region, spot=False),
                "worker_usd_per_hour": hourly_cost_in(cfg.worker_machine, cfg.region, spot=cfg.worker_spot),
            }
    return values


# What a batch puts on a machine's disk (docs/stacks.md, "Disk"). Assumptions, each to be confirmed
# by the first real batch (status shows the disk's use): 40 requests/s on average over a run (issue
# 24's traffic shape; 20-60 seen), 0.6 KB per request in traffic.sqlite (schema 2: 0.44 KB measured at
# 200k requests, 0.70 KB at 10k), 50 MB per run of logs, coverage and summaries, 40 GB of system and
# images (11 Java services and the tools, built once), 11 GB for the two models where a tool needs them.
ASSUMED_REQUESTS_PER_SECOND = 40.0
ASSUMED_KB_PER_REQUEST = 0.6
RUN_OVERHEAD_GB = 0.05
BASE_GB = 40.0
MODELS_GB = 11.0
MODEL_TOOLS = frozenset({"llamaresttest"})


def disk_needed_gb(cfg: StackConfig, runs: int, budget_seconds: float) -> tuple[float, str]:
    """The disk a machine of this stack needs for the batch, and how that was reckoned (pure). One
    VM keeps every run; a cluster's head keeps summaries only (the traffic stays in the bucket) and a
    worker one run per slot at a time (each attempt's folder goes once it is uploaded)."""
    traffic_gb = budget_seconds * ASSUMED_REQUESTS_PER_SECOND * ASSUMED_KB_PER_REQUEST / 1e6
    models = MODELS_GB if set(cfg.tools) & MODEL_TOOLS else 0.0
    total = len(cfg.apis) * len(cfg.tools) * runs
    if cfg.is_cluster and cfg.upload_results:
        head = BASE_GB + total * RUN_OVERHEAD_GB
        worker = BASE_GB + models + cfg.worker_slots * (traffic_gb + RUN_OVERHEAD_GB)
        return max(head, worker), (
            f"the head keeps {total} runs' summaries ({total} x {RUN_OVERHEAD_GB:g} GB) beside "
            f"{BASE_GB:g} GB of system and images; a worker holds {cfg.worker_slots} runs at once "
            f"({traffic_gb:.2f} GB of traffic each at {ASSUMED_REQUESTS_PER_SECOND:g} requests/s x "
            f"{ASSUMED_KB_PER_REQUEST:g} KB) plus {models:g} GB of models"
        )
    need = BASE_GB + models + total * (traffic_gb + RUN_OVERHEAD_GB)
    return need, (
        f"{total} runs x ({traffic_gb:.2f} GB of traffic at {ASSUMED_REQUESTS_PER_SECOND:g} requests/s x "
        f"{ASSUMED_KB_PER_REQUEST:g} KB per request over {budget_seconds / 60:g} min "
        f"+ {RUN_OVERHEAD_GB:g} GB) + {BASE_GB:g} GB of system and images + {models:g} GB of models"
    )


def disk_problem(cfg: StackConfig, project_root: Path | None = None) -> str | None:
    """Why ``diskSizeGb`` cannot hold the batch (with the numbers and the fix), or None."""
    settings, problems = runner_schema.merge(_runner_values(cfg, project_root), {})
    if problems:
        return None  # reported by the runner's own check
    need, how = disk_needed_gb(cfg, settings.runs, settings.budget_seconds)
    if cfg.disk_size_gb >= need:
        return None
    return (
        f"{cfg.disk_size_gb} GB cannot hold the batch, which needs about {math.ceil(need)} GB: {how} "
        f"(assumed; docs/stacks.md). Fix: pulumi config set {NAMESPACE}:diskSizeGb {math.ceil(need * 1.1)}, "
        "or fewer runs or a shorter budget"
    )


def runner_problems(cfg: StackConfig, project_root: Path | None = None) -> list[tuple[tuple[str, ...], str]]:
    """What the runner's schema (``remote_runner.batch.settings``) refuses in this stack's runner settings:
    (the stack keys it comes from, the problem with its fix). Each setting is read on its own, so every
    problem is attributed to its keys."""
    out: list[tuple[tuple[str, ...], str]] = []
    for name, value in _runner_values(cfg, project_root).items():
        _, problems = runner_schema.merge({name: value}, {})
        sources = _RUNNER_SOURCES.get(name, ())
        for problem in problems:
            if not sources:
                out.append(((), f"runner settings: {problem}"))
                continue
            fix = _RUNNER_FIXES.get(sources[0], "a value the runner accepts")
            out.append(
                (
                    sources,
                    f"{NAMESPACE}:{sources[0]}: the runner refuses the setting it gives, {problem} "
                    f"(fix: pulumi config set {NAMESPACE}:{sources[0]} <{fix}>)",
                )
            )
    return out


def experiment_settings(cfg: StackConfig, project_root: Path | None = None) -> dict[str, Any]:
    """The runner settings JSON of docs/contracts.md for this stack, as the VM (or, for ``local``,
    the runner container on this machine, which sees the checkout at ``project_root``) runs it.

    The values go through the runner's own schema (``remote_runner.batch.settings.merge``) and are written
    as the runner writes them (sizes in bytes), so the file means to the runner exactly what it says;
    :func:`build_config` has refused a stack whose settings the runner would refuse.
    ``batch`` is left to the deploy step (it names the batch once and keeps it across redeploys).
    Locally there is no ``models_dir`` unless ``localModelsDir`` is set, and no upload unless
    ``uploadResults`` was set to true explicitly (``build_config`` decides ``upload_results``).
    """
    values = _runner_values(cfg, project_root)
    settings, problems = runner_schema.merge(values, {})
    if problems:
        raise ConfigError(problems)
    written = settings.to_json()
    return {name: written[name] for name in values}


# --- parsing -------------------------------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads typed values from raw config, noting a problem (and returning the default) on bad input."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.bad_keys: set[str] = set()

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {text}")
        self.bad_keys.add(key)

    def _get(self, key: str, parse: Callable[[object], T], expected: str) -> T:
        value = self.raw.get(key)
        default: T = DEFAULTS[key]
        if value is None or value == "":
            return default
        try:
            return parse(value)
        except (ValueError, TypeError):
            self.problem(
                key, f"{value!r} is not {expected} (fix: pulumi config set {NAMESPACE}:{key} <{expected}>)"
            )
            return default

    def boolean(self, key: str) -> bool:
        return self._get(key, _parse_bool, "true or false")

    def optional_boolean(self, key: str) -> bool | None:
        """None when unset (the key's default then depends on other keys)."""
        return self._get(key, _parse_bool, "true or false")

    def integer(self, key: str, minimum: int) -> int:
        value = self._get(key, _parse_int, "a whole number")
        if value < minimum:
            self.problem(key, f"{value} is too small; it must be at least {minimum}")
        return value

    def number(self, key: str, minimum: float, *, inclusive: bool) -> float:
        value = self._get(key, _parse_float, "a number")
        if value < minimum or (not inclusive and value == minimum):
            bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"
            self.problem(key, f"{value:g} is out of range; it must be {bound}")
        return value

    def string(self, key: str) -> str:
        return self._get(key, _parse_str, "a string") or ""

    def strings(self, key: str) -> tuple[str, ...]:
        return self._get(key, _parse_str_list, 'a list of strings, e.g. ["a", "b"]')


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(value)


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(value)


def _parse_float(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        result = float(value)
        if result != result or result in (float("inf"), float("-inf")):
            raise ValueError(value)
        return result
    raise TypeError(value)


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value.strip()


def _parse_str_list(value: object) -> tuple[str, ...]:
    """A YAML list (Pulumi hands it over as JSON text), or a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return tuple(v.strip() for v in value)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_target(target: str, reader: _Reader) -> None:
    """The one place that decides which targets this program can deploy to."""
    if target not in TARGETS:
        reader.problem("target", f"{target!r} is not a target; choose one of {', '.join(TARGETS)}")


def _check_names(
    reader: _Reader, key: str, names: tuple[str, ...], known: Sequence[str], folder: str
) -> None:
    if not names:
        reader.problem(key, "the list is empty; name at least one")
        return
    if not known:
        reader.problem(key, f"no {folder} found: each needs {folder}/<name>/Dockerfile in the project")
        return
    for name in names:
        if name not in known:
            reader.problem(
                key,
                f"unknown name {name!r}{_suggest(name, known)}; known {folder}: {', '.join(sorted(known))}",
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        reader.problem(key, f"listed twice: {', '.join(duplicates)}")


def _check_bucket(reader: _Reader, key: str, bucket: str) -> None:
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        reader.problem(key, f"{bucket!r} is not a Cloud Storage bucket name (lower case, 3-63 characters)")
    elif bucket.startswith(PLACEHOLDER_PREFIX):
        reader.problem(key, f"{bucket!r} is the example value; set your bucket's name")


def _object_path(reader: _Reader, key: str) -> str:
    path = reader.string(key).strip("/")
    if not path or not _OBJECT_PATH_RE.fullmatch(path) or "//" in path or ".." in path.split("/"):
        reader.problem(
            key, f"{path!r} is not a usable folder in a bucket (letters, digits, . _ - and /, not empty)"
        )
    return path


def local_dir_problems(reader: _Reader, results_dir: Path, models_dir: Path | None) -> None:
    """For ``target: local``: the results folder must exist as a writable folder or be creatable (its
    nearest existing parent a writable folder); the models folder, when given, must exist. This looks
    at the disk but changes nothing: the program creates the results folder during ``pulumi up``."""
    fix = f"(fix: pulumi config set {NAMESPACE}:localResultsDir <a folder you can write>)"
    if results_dir.exists():
        if not results_dir.is_dir():
            reader.problem("localResultsDir", f"{results_dir} exists but is not a folder {fix}")
        elif not os.access(results_dir, os.W_OK | os.X_OK):
            reader.problem("localResultsDir", f"{results_dir} is not writable by you {fix}")
    else:
        parent = results_dir.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            reader.problem(
                "localResultsDir", f"{results_dir} cannot be created: {parent} is not a folder {fix}"
            )
        elif not os.access(parent, os.W_OK | os.X_OK):
            reader.problem(
                "localResultsDir", f"{results_dir} cannot be created: {parent} is not writable by you {fix}"
            )
    if models_dir is not None and not models_dir.is_dir():
        reader.problem(
            "localModelsDir",
            f"{models_dir} is not an existing folder; it must hold ex.gguf and ipd.gguf "
            f"(fix: pulumi config set {NAMESPACE}:localModelsDir <folder>, or remove the key "
            "when no tool needs the models)",
        )


def _local_path(reader: _Reader, key: str, project_root: Path) -> Path | None:
    text = reader.string(key)
    if not text:
        return None
    path = Path(os.path.expanduser(text))
    return Path(os.path.abspath(path if path.is_absolute() else project_root / path))


def build_config(
    raw: Mapping[str, object],
    *,
    stack: str,
    gcp: Mapping[str, object],
    known_apis: Sequence[str],
    known_tools: Sequence[str],
    project: str = NAMESPACE,
    project_root: Path | None = None,
    local_machine: MachineType | None = None,
) -> StackConfig:
    """Validate ``raw`` (keys of the ``llamaresttest`` namespace, without the prefix) and ``gcp``
    (``project``, ``region``, ``zone``); raise one ConfigError listing every problem.

    For ``target: local``, ``project_root`` anchors a relative ``localResultsDir`` (default: the
    current folder) and ``local_machine`` is this machine (default: :func:`this_machine`).
    """
    r = _Reader(raw)
    for key in sorted(set(raw) - KNOWN_KEYS):
        r.problem(key, f"unknown key{_suggest(key, KNOWN_KEYS)}; the keys are listed in docs/stacks.md")

    target = r.string("target")
    _check_target(target, r)
    local = target == "local"
    # A local stack neither needs nor checks the Google Cloud keys: they are read with their defaults
    # by a reader whose problems are dropped (the values are never used for anything local).
    g = _Reader({}) if local else r

    gcp_project = "" if local else str(gcp.get("project") or "").strip()
    zone = DEFAULT_ZONE if local else str(gcp.get("zone") or DEFAULT_ZONE).strip()
    zone_match = _ZONE_RE.fullmatch(zone)
    given_region = None if local else gcp.get("region")
    region = str(given_region or (zone_match.group(1) if zone_match else "")).strip()
    if not local:
        if not gcp_project:
            r.problems.append(
                "gcp:project is required (fix: pulumi config set gcp:project <your project id>)"
            )
        elif not _PROJECT_RE.fullmatch(gcp_project):
            r.problems.append(
                f"gcp:project: {gcp_project!r} is not a project id (6-30 characters, a-z 0-9 -)"
            )
        elif gcp_project.startswith(PLACEHOLDER_PREFIX):
            r.problems.append(f"gcp:project: {gcp_project!r} is the example value; set your project id")
        if not zone_match:
            r.problems.append(f"gcp:zone: {zone!r} is not a zone name like us-central1-a")
        elif zone_match.group(1) != region:
            r.problems.append(f"gcp:region: {region!r} does not contain the zone {zone}; set them to agree")

    machine = (local_machine or this_machine()) if local else _machine(r, "machineType")
    disk_size_gb = g.integer("diskSizeGb", MIN_DISK_GB)
    disk_type = g.string("diskType")
    if disk_type not in DISK_TYPES:
        g.problem("diskType", f"{disk_type!r} is not one of {', '.join(DISK_TYPES)}")
    spot = g.boolean("spot")
    max_run_hours = g.number("maxRunHours", 0, inclusive=True)
    network = g.string("network")
    static_ip_set = g.optional_boolean("staticIp")
    static_ip = spot if static_ip_set is None else static_ip_set

    upload_set = raw.get("uploadResults") not in (None, "")
    upload_results = r.boolean("uploadResults")
    if local:
        # Workstations rarely hold Cloud Storage credentials: uploading is opt-in there.
        upload_results = upload_set and upload_results
    if local:
        # The models come from localModelsDir; a bucket is only needed to upload, and only then checked.
        models_bucket = results_bucket = ""
        if upload_results:
            key = "resultsBucket" if raw.get("resultsBucket") else "modelsBucket"
            results_bucket = r.string(key)
            if not results_bucket:
                r.problem(
                    "resultsBucket",
                    "is required when uploadResults is true on the local target "
                    f"(fix: pulumi config set {NAMESPACE}:resultsBucket <bucket>)",
                )
            else:
                _check_bucket(r, key, results_bucket)
        results_path = _object_path(r if upload_results else g, "resultsPath")
    else:
        models_bucket = r.string("modelsBucket")
        if not models_bucket:
            r.problem(
                "modelsBucket",
                "is required: the bucket holding the models "
                f"(fix: pulumi config set {NAMESPACE}:modelsBucket <bucket>)",
            )
        else:
            _check_bucket(r, "modelsBucket", models_bucket)
        results_bucket = r.string("resultsBucket") or models_bucket
        if raw.get("resultsBucket"):
            _check_bucket(r, "resultsBucket", results_bucket)
        results_path = _object_path(r, "resultsPath")
    models_path = _object_path(g, "modelsPath")

    allow_anywhere = g.boolean("allowSshFromAnywhere")
    ranges = g.strings("sshSourceRanges") or ()
    if not local:
        r.problems.extend(ssh_range_problems(ranges, allow_anywhere=allow_anywhere))
    ssh_user = g.string("sshUser")
    if not _USER_RE.fullmatch(ssh_user) or ssh_user == "root":
        g.problem("sshUser", f"{ssh_user!r} is not a usable login name (lower case, not root)")

    apis = r.strings("apis")
    _check_names(r, "apis", apis, known_apis, "apis")
    tools = r.strings("tools")
    _check_names(r, "tools", tools, known_tools, "tools")
    runs = r.integer("runsPerCombination", 1)
    budget = r.integer("timeBudgetMinutes", 1)
    cpus = r.number("cpusPerContainer", 0, inclusive=False)
    memory = r.number("memoryPerContainerGb", 0, inclusive=False)
    min_free = r.number("minFreeCpus", 0, inclusive=True)
    limits_valid = cpus > 0 and memory > 0 and min_free >= 0
    # A VM's machine type is chosen to fit; a workstation is what it is: the program only warns (a
    # shared or borderline machine is the operator's call, and the runner's admission is the gate).
    fits = machine is not None and limits_valid and experiment_slots(machine, cpus, memory, min_free) > 0

    workers, worker_machine, head_machine = _cluster_keys(r, local, cpus, memory, min_free, limits_valid)
    worker_spot = g.boolean("workerSpot")
    if not local and zone_match and zone_match.group(1) == region:
        in_use = [("workerMachineType", worker_machine), ("headMachineType", head_machine)] if workers else []
        _region_problems(r, region, zone, in_use or [("machineType", machine)])
    if not local and machine is not None and limits_valid and not fits and workers == 0:
        bigger = [m.name for m in MACHINE_TYPES.values() if experiment_slots(m, cpus, memory, min_free)]
        r.problem(
            "machineType",
            f"{machine.name} ({machine.vcpus} vCPUs, {machine.memory_gb:g} GB) is too small for one "
            f"experiment, which needs {experiment_needs(cpus, memory, min_free)}; choose "
            f"{' or '.join(bigger) or 'a bigger machine'}, or lower cpusPerContainer, "
            "memoryPerContainerGb or minFreeCpus",
        )

    max_cost = r.number("maxCostUsd", 0, inclusive=True)
    if max_cost > 0 and workers == 0:
        r.problem(
            "maxCostUsd",
            "caps a cluster's spend (workers > 0); a one-VM stack's cost is its hourlyCostUsd times the "
            f"batch's hours (fix: pulumi config rm {NAMESPACE}:maxCostUsd, or set workers)",
        )
    bake_worker_image = r.boolean("bakeWorkerImage")
    if bake_worker_image and workers == 0:
        r.problem(
            "bakeWorkerImage",
            "bakes the workers' boot image (workers > 0); a one-VM stack has no workers "
            f"(fix: pulumi config rm {NAMESPACE}:bakeWorkerImage, or set workers)",
        )
    worker_wait = r.number("workerWaitMinutes", 0, inclusive=False)
    if "workerWaitMinutes" in raw and raw["workerWaitMinutes"] not in (None, "") and workers == 0:
        r.problem(
            "workerWaitMinutes",
            "is how long a cluster's head waits for its first worker (workers > 0); a one-VM stack has "
            f"none (fix: pulumi config rm {NAMESPACE}:workerWaitMinutes, or set workers)",
        )
    auto_start = r.boolean("autoStart")
    shutdown_when_done = r.optional_boolean("shutdownWhenDone")
    if shutdown_when_done is None:
        shutdown_when_done = target == "gcp"
    elif shutdown_when_done and local:
        r.problem(
            "shutdownWhenDone",
            "true would power off this workstation when the batch ends; it is for the VM only "
            f"(fix: pulumi config rm {NAMESPACE}:shutdownWhenDone)",
        )

    local_results_dir: Path | None = None
    local_models_dir: Path | None = None
    if local:
        root = project_root if project_root is not None else Path.cwd()
        local_results_dir = _local_path(r, "localResultsDir", root)
        local_models_dir = _local_path(r, "localModelsDir", root)
        if local_results_dir is None:  # set to an empty string
            r.problem("localResultsDir", "must name a folder")
        else:
            local_dir_problems(r, local_results_dir, local_models_dir)

    cfg = StackConfig(
        project=project,
        stack=stack,
        target=target,
        gcp_project=gcp_project,
        region=region,
        zone=zone,
        # an unknown machine type is a problem already; the runner's settings do not depend on it
        machine=machine or MACHINE_TYPES[DEFAULTS["machineType"]],
        disk_size_gb=disk_size_gb,
        disk_type=disk_type,
        spot=spot,
        max_run_hours=max_run_hours,
        network=network,
        static_ip=static_ip,
        models_bucket=models_bucket,
        models_path=models_path,
        results_bucket=results_bucket,
        results_path=results_path,
        ssh_source_ranges=ranges,
        allow_ssh_from_anywhere=allow_anywhere,
        ssh_user=ssh_user,
        apis=apis,
        tools=tools,
        runs_per_combination=runs,
        time_budget_minutes=budget,
        cpus_per_container=cpus,
        memory_per_container_gb=memory,
        min_free_cpus=min_free,
        auto_start=auto_start,
        upload_results=upload_results,
        shutdown_when_done=shutdown_when_done,
        local_results_dir=local_results_dir,
        local_models_dir=local_models_dir,
        workers=workers,
        worker_machine=worker_machine,
        worker_spot=worker_spot,
        head_machine=head_machine,
        max_cost_usd=max_cost,
        bake_worker_image=bake_worker_image,
        worker_wait_minutes=worker_wait,
        preset=r.string("preset") or None,
        explicit_keys=frozenset(k for k, v in raw.items() if v is not None and v != ""),
    )
    if not local and not r.problems:
        problem = disk_problem(cfg, project_root)
        if problem is not None:
            r.problem("diskSizeGb", problem)
    # The runner's schema has the last word on the settings the VM (or the local runner) will read;
    # a key the stack's own check refused already is not reported twice.
    r.problems.extend(text for keys, text in runner_problems(cfg, project_root) if not r.bad_keys & set(keys))
    if r.problems:
        raise ConfigError(r.problems)
    return cfg


def _machine(reader: _Reader, key: str) -> MachineType | None:
    """The machine type of ``key``: its family must be one of ``pricing.FAMILIES`` and its size one the
    price table has (remote_runner/cloud/pricing.py)."""
    name = reader.string(key)
    machine = MACHINE_TYPES.get(name)
    if machine is not None:
        return machine
    family = name.split("-", 1)[0]
    if family not in pricing.FAMILIES:
        reader.problem(
            key,
            f"unknown machine family {family!r} in {name!r}; the families are "
            f'{", ".join(pricing.FAMILIES)} (docs/cluster.md, "Which family and region")',
        )
    else:
        sizes = [m for m in MACHINE_TYPES if m.startswith(f"{family}-")]
        reader.problem(
            key, f"unknown machine type {name!r}{_suggest(name, sizes)}; {family} sizes: {', '.join(sizes)}"
        )
    return None


def _region_problems(
    r: _Reader, region: str, zone: str, machines: Sequence[tuple[str, MachineType | None]]
) -> None:
    """Each machine the stack runs must have a price in ``gcp:region`` (where the catalogue lists it)
    and be offered in ``gcp:zone``, so ``hourlyCostUsd``, the forecast and the head's spend are real."""
    for key, machine in machines:
        if machine is None:
            continue
        regions = pricing.regions_of(machine.name)
        if region not in regions:
            r.problems.append(
                f"gcp:region: {region!r} has no price for {machine.name} ({NAMESPACE}:{key}); the price "
                f"table has it in {', '.join(regions)} (choose one, or refresh the table: "
                "scripts/refresh_prices.py, docs/cluster.md)"
            )
            continue
        zones = pricing.zones_of(machine.name, region)
        if zone not in zones:
            r.problems.append(
                f"gcp:zone: {machine.name} ({NAMESPACE}:{key}) is not offered in {zone}; "
                f"choose one of {', '.join(zones)}"
            )


def _cluster_keys(
    r: _Reader, local: bool, cpus: float, memory: float, min_free: float, limits_valid: bool
) -> tuple[int, MachineType | None, MachineType | None]:
    """``workers``, ``workerMachineType`` and ``headMachineType``, checked (docs/cluster.md).

    The machine types are checked whatever ``workers`` is (a typo waits for no one); the experiment
    must fit a worker the way it must fit the one VM. A local stack has no workers: a Ray cluster of
    one's own is reached with the runner's ``--ray`` instead.
    """
    workers_set = r.raw.get("workers") not in (None, "")
    if local:
        if workers_set:
            r.problem(
                "workers",
                "is for the gcp target; a local stack runs on this machine (for a Ray cluster of your "
                f"own, see docs/cluster.md) (fix: pulumi config rm {NAMESPACE}:workers)",
            )
        return 0, None, None
    workers = r.integer("workers", 0)
    worker_machine = _machine(r, "workerMachineType")
    head_machine = _machine(r, "headMachineType")
    if (
        worker_machine is not None
        and limits_valid
        and experiment_slots(worker_machine, cpus, memory, min_free) == 0
    ):
        bigger = [m.name for m in MACHINE_TYPES.values() if experiment_slots(m, cpus, memory, min_free)]
        r.problem(
            "workerMachineType",
            f"{worker_machine.name} ({worker_machine.vcpus} vCPUs, {worker_machine.memory_gb:g} GB) is too "
            f"small for one experiment, which needs {experiment_needs(cpus, memory, min_free)}; choose "
            f"{' or '.join(bigger) or 'a bigger machine'}, or lower cpusPerContainer, "
            "memoryPerContainerGb or minFreeCpus",
        )
    return max(workers, 0), worker_machine, head_machine


# --- the edge: Pulumi config and the catalog on disk -------------------------------------------


def discover_catalog(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the APIs and tools of the project at ``root``: every ``apis/<name>/`` and
    ``tools/<name>/`` folder with a Dockerfile (the runner's catalog rule, docs/contracts.md)."""

    def names(folder: str) -> tuple[str, ...]:
        base = root / folder
        if not base.is_dir():
            return ()
        return tuple(sorted(p.name for p in base.iterdir() if (p / "Dockerfile").is_file()))

    return names("apis"), names("tools")


def _configured_keys(namespace: str) -> set[str]:
    """Keys set in ``namespace`` (so that typos are reported instead of silently ignored).

    The SDK has no public listing; the config lives where ``pulumi.runtime.config`` reads it from.
    """
    from pulumi.runtime import config as runtime_config

    found = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{namespace}:"
    return {k[len(prefix) :] for k in found if k.startswith(prefix)}


def this_machine() -> MachineType:
    """This workstation as a machine type (logical CPUs and total memory, from psutil; no price)."""
    import psutil

    memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    return MachineType(LOCAL_MACHINE_NAME, psutil.cpu_count() or 1, memory_gb, 0.0, 0.0)


def load_config(project_root: Path) -> StackConfig:
    """Read the current stack's config through Pulumi and validate it (raises ConfigError)."""
    import pulumi

    ours = pulumi.Config(NAMESPACE)
    gcp = pulumi.Config("gcp")
    raw = {key: ours.get(key) for key in KNOWN_KEYS | _configured_keys(NAMESPACE)}
    known_apis, known_tools = discover_catalog(project_root)
    return build_config(
        {k: v for k, v in raw.items() if v is not None},
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        gcp={k: gcp.get(k) for k in ("project", "region", "zone")},
        known_apis=known_apis,
        known_tools=known_tools,
        project_root=project_root,
    )
