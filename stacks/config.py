"""The stack's configuration: read once, validated completely, then frozen.

``build_config`` is pure: it turns raw values (strings as Pulumi stores them, or already-typed
values) into a :class:`StackConfig`, or raises one :class:`ConfigError` that lists every problem
with its fix. ``load_config`` is the thin edge that reads ``pulumi.Config`` and the catalog folders.
Nothing is declared before the config has passed, so a bad stack costs nothing.

Every key, its default and its meaning are documented in docs/stacks.md; keep the two in step.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pulumi.errors import RunError

from stacks.machines import MACHINE_TYPES, MachineType, experiment_needs, experiment_slots
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
    "staticIp": False,
    "modelsBucket": None,
    "modelsPath": "LlamaRestTest",
    "resultsBucket": None,  # the models bucket
    "resultsPath": "llamaresttest-results",
    "sshSourceRanges": None,
    "allowSshFromAnywhere": False,
    "sshUser": "llamaresttest",
    "apis": BENCHMARK_APIS,
    "tools": DEFAULT_TOOLS,
    "runsPerCombination": 1,
    "timeBudgetMinutes": 60,
    "cpusPerContainer": 8,
    "memoryPerContainerGb": 16,
    "minFreeCpus": 14,
    "autoStart": False,
    "uploadResults": True,
    "shutdownWhenDone": None,  # true on gcp (a stopped VM costs only its disk), false elsewhere
}
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

    @property
    def machine_type(self) -> str:
        return self.machine.name

    @property
    def experiment_slots(self) -> int:
        return experiment_slots(
            self.machine, self.cpus_per_container, self.memory_per_container_gb, self.min_free_cpus
        )

    @property
    def hourly_cost_usd(self) -> float:
        return self.machine.hourly_cost(spot=self.spot)

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


def format_memory(gb: float) -> str:
    """Docker's notation: whole gigabytes as "16g", anything else in mebibytes ("512m")."""
    return f"{int(gb)}g" if float(gb).is_integer() else f"{round(gb * 1024)}m"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def experiment_settings(cfg: StackConfig) -> dict[str, Any]:
    """The runner settings JSON of docs/contracts.md for this stack, as the VM runs it.

    ``batch`` is left to the deploy step (it names the batch once and keeps it across redeploys).
    """
    settings: dict[str, Any] = {
        "catalog": VM_CURRENT_LINK,
        "results": VM_RESULTS_DIR,
        "batch": None,
        "apis": list(cfg.apis),
        "tools": list(cfg.tools),
        "runs": cfg.runs_per_combination,
        "budget_seconds": cfg.time_budget_minutes * 60,
        "cpus_per_container": _number(cfg.cpus_per_container),
        "memory_per_container": format_memory(cfg.memory_per_container_gb),
        "min_free_cpus": _number(cfg.min_free_cpus),
        "models_dir": VM_MODELS_DIR,
        "shutdown_when_done": cfg.shutdown_when_done,
    }
    if cfg.upload_results:
        settings["upload"] = {"bucket": cfg.results_bucket, "path": cfg.results_path}
    return settings


# --- parsing -------------------------------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads typed values from raw config, noting a problem (and returning the default) on bad input."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {text}")

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
    if target == "local":
        reader.problem(
            "target",
            "'local' is not available yet (it comes with the deploy step); use 'gcp' for now "
            f"(fix: pulumi config set {NAMESPACE}:target gcp)",
        )
    elif target not in TARGETS:
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


def build_config(
    raw: Mapping[str, object],
    *,
    stack: str,
    gcp: Mapping[str, object],
    known_apis: Sequence[str],
    known_tools: Sequence[str],
    project: str = NAMESPACE,
) -> StackConfig:
    """Validate ``raw`` (keys of the ``llamaresttest`` namespace, without the prefix) and ``gcp``
    (``project``, ``region``, ``zone``); raise one ConfigError listing every problem."""
    r = _Reader(raw)
    for key in sorted(set(raw) - KNOWN_KEYS):
        r.problem(key, f"unknown key{_suggest(key, KNOWN_KEYS)}; the keys are listed in docs/stacks.md")

    target = r.string("target")
    _check_target(target, r)

    gcp_project = str(gcp.get("project") or "").strip()
    if not gcp_project:
        r.problems.append("gcp:project is required (fix: pulumi config set gcp:project <your project id>)")
    elif not _PROJECT_RE.fullmatch(gcp_project):
        r.problems.append(f"gcp:project: {gcp_project!r} is not a project id (6-30 characters, a-z 0-9 -)")
    elif gcp_project.startswith(PLACEHOLDER_PREFIX):
        r.problems.append(f"gcp:project: {gcp_project!r} is the example value; set your project id")
    zone = str(gcp.get("zone") or DEFAULT_ZONE).strip()
    zone_match = _ZONE_RE.fullmatch(zone)
    region = str(gcp.get("region") or (zone_match.group(1) if zone_match else "")).strip()
    if not zone_match:
        r.problems.append(f"gcp:zone: {zone!r} is not a zone name like us-central1-a")
    elif zone_match.group(1) != region:
        r.problems.append(f"gcp:region: {region!r} does not contain the zone {zone}; set them to agree")

    machine_type = r.string("machineType")
    machine = MACHINE_TYPES.get(machine_type)
    if machine is None:
        r.problem(
            "machineType",
            f"unknown machine type {machine_type!r}{_suggest(machine_type, MACHINE_TYPES)}; "
            f"known: {', '.join(MACHINE_TYPES)}",
        )
    disk_size_gb = r.integer("diskSizeGb", MIN_DISK_GB)
    disk_type = r.string("diskType")
    if disk_type not in DISK_TYPES:
        r.problem("diskType", f"{disk_type!r} is not one of {', '.join(DISK_TYPES)}")
    spot = r.boolean("spot")
    max_run_hours = r.number("maxRunHours", 0, inclusive=True)
    network = r.string("network")
    static_ip = r.boolean("staticIp")

    models_bucket = r.string("modelsBucket")
    if not models_bucket:
        r.problem(
            "modelsBucket",
            "is required: the bucket holding the models "
            f"(fix: pulumi config set {NAMESPACE}:modelsBucket <bucket>)",
        )
    else:
        _check_bucket(r, "modelsBucket", models_bucket)
    models_path = _object_path(r, "modelsPath")
    results_bucket = r.string("resultsBucket") or models_bucket
    if raw.get("resultsBucket"):
        _check_bucket(r, "resultsBucket", results_bucket)
    results_path = _object_path(r, "resultsPath")

    allow_anywhere = r.boolean("allowSshFromAnywhere")
    ranges = r.strings("sshSourceRanges") or ()
    r.problems.extend(ssh_range_problems(ranges, allow_anywhere=allow_anywhere))
    ssh_user = r.string("sshUser")
    if not _USER_RE.fullmatch(ssh_user) or ssh_user == "root":
        r.problem("sshUser", f"{ssh_user!r} is not a usable login name (lower case, not root)")

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
    if machine is not None and limits_valid and experiment_slots(machine, cpus, memory, min_free) == 0:
        bigger = [m.name for m in MACHINE_TYPES.values() if experiment_slots(m, cpus, memory, min_free)]
        r.problem(
            "machineType",
            f"{machine.name} ({machine.vcpus} vCPUs, {machine.memory_gb:g} GB) is too small for one "
            f"experiment, which needs {experiment_needs(cpus, memory, min_free)}; choose "
            f"{' or '.join(bigger) or 'a bigger machine'}, or lower cpusPerContainer, "
            "memoryPerContainerGb or minFreeCpus",
        )

    auto_start = r.boolean("autoStart")
    upload_results = r.boolean("uploadResults")
    shutdown_when_done = r.optional_boolean("shutdownWhenDone")
    if shutdown_when_done is None:
        shutdown_when_done = target == "gcp"

    if r.problems:
        raise ConfigError(r.problems)
    assert machine is not None
    return StackConfig(
        project=project,
        stack=stack,
        target=target,
        gcp_project=gcp_project,
        region=region,
        zone=zone,
        machine=machine,
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
    )


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
    )
