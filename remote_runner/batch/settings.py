"""The runner's settings: defaults < ``--config`` JSON file < command-line flags.

:data:`KEYS` is the one definition of every setting: its name (the config file's key, plan.json's
key and the :class:`Settings` field), how a value is read (from a flag's text, a config file's JSON
or an older plan.json), its default, its flag and help, and whether a resumed batch keeps the planned
value. The dataclass's defaults, :data:`CONFIG_KEYS`, the coercion in :func:`merge`, the CLI's ``run``
flags (remote_runner/cli.py), the path keys and :data:`RESUMABLE_KEYS` all come from it, so a new
setting is one entry here (plus its typed field) and cannot be half-added: a test checks the two agree.

Sizes (``memory_per_container``, ``min_free_disk``) are whole bytes once read; "16g", "512m" and plain
numbers are accepted as input, so config files and plan.json files written before sizes were bytes
(they stored "16g") still load and still resume.

Parsing collects every problem instead of stopping at the first, so a user fixes a config file in one
go; :func:`validate` then checks the settings against the catalog, the machine and the results folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from remote_runner.common.sizes import format_size, parse_disk_size, parse_memory
from remote_runner.experiment.catalog import Catalog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
#: the port ``ray start --head`` gives the cluster's GCS unless told otherwise (Ray's documentation)
RAY_DEFAULT_PORT = 6379


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


@dataclass(frozen=True)
class Upload:
    bucket: str
    path: str = "llamaresttest-results"


class Problems(ValueError):
    """A value with several problems (each already names where it is), reported as they are."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- how each kind of value is read ----------------------------------------------------------------
# Each reader takes a value as it comes (a flag's text, JSON from a config file or a plan.json, or an
# already typed value from a base Settings) and returns the typed value, or raises ValueError/TypeError
# saying what was expected.


def _path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError(f"expected a path, got {value!r}")
    return Path(value)


def _batch_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise ValueError(f"expected a batch folder name, got {value!r}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of names or 'a,b', got {value!r}")


def _at_least_one(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {value!r}")
    return number


def _restarts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of restarts (0 or more), got {value!r}")
    return value


def _cpus(minimum: float) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        amount = float(value)
        if amount < minimum:
            raise ValueError(f"must be positive, got {value!r}")
        return amount

    return read


def _stop_grace(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds > 20:
        raise ValueError("at most 20 s, so a SIGTERM'd runner exits within 30 s")
    return seconds


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _upload(value: Any) -> Upload | None:
    if value is None or isinstance(value, Upload):
        return value
    if not isinstance(value, Mapping) or not isinstance(value.get("bucket"), str) or not value["bucket"]:
        raise ValueError(f'expected {{"bucket": "...", "path": "..."}}, got {value!r}')
    return Upload(bucket=value["bucket"], path=str(value.get("path", "llamaresttest-results")).strip("/"))


@dataclass(frozen=True)
class WorkerGroup:
    """The zonal managed instance group of a cluster stack's workers (resized to 0 at the end)."""

    project: str
    zone: str
    name: str
    #: the most workers the runner asks for (the stack's ``workers``; 0: never resize up)
    size: int = 0
    #: experiments one worker runs at once (the stack's slot rule)
    slots: int = 1
    #: the workers' machine type (the stack's ``workerMachineType``; "" when not given): a batch
    #: keeps one worker family, so a resume on another family is refused (remote_runner/batch/family_check.py)
    machine_type: str = ""


def worker_group(value: Any) -> WorkerGroup | None:
    if value is None or isinstance(value, WorkerGroup):
        return value
    if not isinstance(value, Mapping) or not all(
        isinstance(value.get(k), str) and value.get(k) for k in ("project", "zone", "name")
    ):
        raise ValueError(f'expected {{"project": "...", "zone": "...", "name": "..."}}, got {value!r}')
    size, slots = value.get("size", 0), value.get("slots", 1)
    if (
        not all(isinstance(n, int) and not isinstance(n, bool) for n in (size, slots))
        or size < 0
        or slots < 1
    ):
        raise ValueError(f"worker_group: size must be a whole number >= 0 and slots >= 1, got {value!r}")
    machine_type = value.get("machine_type", "")
    if not isinstance(machine_type, str):
        raise ValueError(f"worker_group: machine_type must be a machine type name, got {machine_type!r}")
    return WorkerGroup(
        str(value["project"]), str(value["zone"]), str(value["name"]), size, slots, machine_type
    )


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def _models_source(value: Any) -> tuple[str, str] | None:
    if value is None or isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping) or not isinstance(value.get("bucket"), str) or not value["bucket"]:
        raise ValueError(f'expected {{"bucket": "...", "path": "..."}}, got {value!r}')
    return (str(value["bucket"]), str(value.get("path", "")).strip("/"))


def _cost_rates(value: Any) -> tuple[tuple[str, float], ...] | None:
    if value is None or isinstance(value, tuple):
        return value
    keys = ("head_usd_per_hour", "worker_usd_per_hour")
    if not isinstance(value, Mapping) or set(value) != set(keys):
        raise ValueError(f'expected {{"head_usd_per_hour": H, "worker_usd_per_hour": W}}, got {value!r}')
    return tuple((k, _non_negative_float(value[k])) for k in keys)


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k for k, v in value.items()
    ):
        raise ValueError(f'expected {{"key": "value", ...}}, got {value!r}')
    return tuple(sorted(value.items()))


def _tool_build_args(value: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f'expected {{"<tool>": {{"ARG": "value"}}}}, got {value!r}')
    from remote_runner.experiment.catalog import check_build_args

    out, problems = [], []
    for tool, table in sorted(value.items()):
        args, bad = check_build_args(table, f"tool_build_args.{tool}")
        problems.extend(bad)
        out.append((str(tool), tuple(sorted(args.items()))))
    if problems:
        raise Problems(problems)
    return tuple(out)


def _tool_env(value: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping) or not all(
        isinstance(t, str) and isinstance(env, Mapping) for t, env in value.items()
    ):
        raise ValueError(f'expected {{"<tool>": {{"NAME": "value"}}}}, got {value!r}')
    out, problems = [], []
    for tool, env in sorted(value.items()):
        for name, text in env.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                problems.append(f"tool_env.{tool}: {name!r} is not an environment variable name")
            elif not isinstance(text, str):
                problems.append(f"tool_env.{tool}.{name}: expected a string, got {text!r}")
        out.append((str(tool), tuple(sorted((str(k), str(v)) for k, v in env.items()))))
    if problems:
        raise Problems(problems)
    return tuple(out)


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number from 0 to 2**32 - 1, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number from 0 to 2**32 - 1, got {value!r}") from None
    if not 0 <= number < 2**32:
        raise ValueError(f"expected a whole number from 0 to 2**32 - 1, got {value!r}")
    return number


def _preset(value: Any) -> str | None:
    if value is None:
        return None
    from remote_runner.batch.presets import PRESETS

    if not isinstance(value, str) or value not in PRESETS:
        raise ValueError(f"unknown preset {value!r}; known: {', '.join(sorted(PRESETS))}")
    return value


_RAY_HOST_PORT = re.compile(
    r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$"
)


def _ray_address(value: Any) -> str | None:
    """``auto`` (the cluster this machine is a node of) or ``HOST:PORT`` of the head's GCS."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected auto or HOST:PORT, got {value!r}")
    text = value.strip()
    if text == "auto":
        return text
    if "://" in text:
        rest = text.split("://", 1)[1].rstrip("/")
        raise ValueError(
            f"{value!r} has a scheme; give the head's HOST:PORT alone, e.g. {rest!r} "
            "(the runner joins the cluster as a driver, not through Ray Client)"
        )
    match = _RAY_HOST_PORT.match(text)
    if match is None:
        if text and ":" not in text and re.fullmatch(r"[A-Za-z0-9.-]+", text):
            raise ValueError(
                f"{value!r} has no port; give the head's GCS port too, e.g. '{text}:{RAY_DEFAULT_PORT}'"
            )
        raise ValueError(
            f"expected auto or HOST:PORT of the cluster's head (e.g. 10.128.0.2:6379), got {value!r}"
        )
    if not 1 <= int(match.group("port")) <= 65535:
        raise ValueError(f"{value!r}: the port must be 1-65535")
    return text


# Docker's image name grammar (github.com/distribution/reference, regexp.go): an optional registry
# host (it has a dot or a port, or is localhost) then lower-case path components.
_REGISTRY_HOST = re.compile(
    r"^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
    r"(?::[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def _registry(value: Any) -> str | None:
    """An image registry prefix: cluster nodes pull ``<registry>/<image>``."""
    if value is None:
        return None
    example = "e.g. 127.0.0.1:5000/llamaresttest or us-central1-docker.pkg.dev/my-project/my-repo"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"expected an image registry prefix ({example}), got {value!r}; leave it out for none"
        )
    text = value.strip()
    if "://" in text:
        raise ValueError(f"{value!r} has a scheme; image names have none: use {text.split('://', 1)[1]!r}")
    if text.endswith("/"):
        raise ValueError(
            f"{value!r} ends with '/'; the image name is appended with one: use {text.rstrip('/')!r}"
        )
    parts = text.split("/")
    host = parts[0] if ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") else None
    paths = parts[1:] if host is not None else parts
    bad = [p for p in paths if not _PATH_COMPONENT.match(p)]
    if (host is not None and not _REGISTRY_HOST.match(host)) or bad:
        lower = "; repository paths are lower case" if any(p.lower() != p for p in bad) else ""
        raise ValueError(f"{value!r} is not an image registry prefix (HOST[:PORT]/PATH, {example}){lower}")
    return text


# --- the schema ------------------------------------------------------------------------------------

#: how a setting's flag behaves: ``value`` takes an argument; ``off``/``on`` take none and set the
#: boolean to False/True (``--no-build``, ``--skip-broken-apis``); ``pairs`` is repeatable KEY=VALUE,
#: added over the config file's mapping (``--label``)
FlagKind = Literal["value", "off", "on", "pairs"]


@dataclass(frozen=True)
class Key:
    """One setting. ``read`` turns any accepted input into the typed value (ValueError otherwise)."""

    name: str
    read: Callable[[Any], Any]
    default: Any
    help: str
    flag: str | None = None  # None: config file only
    metavar: str | None = None
    kind: FlagKind = "value"
    #: a resumed batch keeps the value in its plan.json (the matrix and experiment parameters); the
    #: others (where the results go, the hooks, the cluster) may differ between a start and a resume
    resumable: bool = False
    #: relative paths in a config file are relative to the file's folder (cli.py)
    path: bool = False
    #: the default as the help and the docs show it (None: from the value; no default shown for None)
    shown: str | None = None
    #: the JSON form written to plan.json (None: the value itself)
    dump: Callable[[Any], Any] | None = None

    @property
    def default_text(self) -> str | None:
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return None
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)


KEYS: tuple[Key, ...] = (
    Key(
        "preset",
        _preset,
        None,
        "a research protocol by name (docs/runner.md, Presets): its settings become the defaults; "
        "the config file and flags still override them, and plan.json records the preset and what "
        "was overridden",
        flag="--preset",
        metavar="NAME",
        resumable=True,
        shown="none",
    ),
    Key(
        "catalog",
        _path,
        Path("."),
        "root holding apis/ and tools/",
        flag="--catalog",
        metavar="DIR",
        resumable=True,
        path=True,
        dump=str,
    ),
    Key(
        "results",
        _path,
        Path("./results"),
        "results folder",
        flag="--results",
        metavar="DIR",
        path=True,
        dump=str,
    ),
    Key("batch", _batch_name, None, "resume the batch with this folder name", flag="--batch", metavar="NAME"),
    Key(
        "apis",
        _names,
        (),
        "comma-separated APIs",
        flag="--apis",
        metavar="A,B",
        resumable=True,
        shown="all in the catalog",
        dump=list,
    ),
    Key(
        "tools",
        _names,
        (),
        "comma-separated tools",
        flag="--tools",
        metavar="T,U",
        resumable=True,
        shown="all in the catalog",
        dump=list,
    ),
    Key(
        "runs", _at_least_one, 1, "repetitions of each tool x API", flag="--runs", metavar="N", resumable=True
    ),
    Key(
        "budget_seconds",
        parse_duration,
        3600.0,
        "time budget per run: seconds, or 30s/10m/1h",
        flag="--budget",
        metavar="DURATION",
        resumable=True,
        shown="1h",
    ),
    Key(
        "cpus_per_container",
        _cpus(0.01),
        8.0,
        "CPU limit of each container",
        flag="--cpus-per-container",
        metavar="CPUS",
        resumable=True,
    ),
    Key(
        "memory_per_container",
        parse_memory,
        16 * 1024**3,
        "memory limit of each container: 512m, 16g or bytes",
        flag="--memory-per-container",
        metavar="SIZE",
        resumable=True,
        shown="16g",
    ),
    Key(
        "min_free_cpus",
        _cpus(0),
        14.0,
        "measured free CPUs needed to admit a run",
        flag="--min-free-cpus",
        metavar="CPUS",
        resumable=True,
    ),
    Key(
        "min_free_disk",
        parse_disk_size,
        1024**3,
        "free space the results disk must keep to admit a run, 0 = off",
        flag="--min-free-disk",
        metavar="SIZE",
        shown="1g",
    ),
    Key(
        "max_attempts",
        _at_least_one,
        3,
        "attempts per run before it is marked failed",
        flag="--max-attempts",
        metavar="N",
    ),
    Key(
        "engine_wait_seconds",
        parse_duration,
        600.0,
        "how long to wait for a Docker engine that went away mid-batch before exiting 5",
        flag="--engine-wait",
        metavar="SECONDS",
    ),
    Key(
        "worker_wait_seconds",
        parse_duration,
        1800.0,
        "cluster mode: how long to wait for a first worker to join before giving up (the worker group "
        "is resized to 0, the head powers off with shutdown_when_done, exit 8)",
        flag="--worker-wait",
        metavar="SECONDS",
    ),
    Key(
        "models_dir",
        _path,
        Path("/opt/llamaresttest/models"),
        "models folder mounted for tools that need it",
        flag="--models-dir",
        metavar="DIR",
        resumable=True,
        path=True,
        dump=str,
    ),
    Key(
        "upload",
        _upload,
        None,
        'sync the batch to Cloud Storage: {"bucket": "...", "path": "..."}',
        dump=lambda u: None if u is None else {"bucket": u.bucket, "path": u.path},
    ),
    Key(
        "worker_group",
        worker_group,
        None,
        "cluster stacks: the workers' managed instance group "
        '{"project": "...", "zone": "...", "name": "...", "machine_type": "..."}, resized to 0 as soon as no '
        "run is pending or running, and whenever the batch cannot go on (written by the stack)",
        dump=lambda g: (
            None
            if g is None
            else {
                "project": g.project,
                "zone": g.zone,
                "name": g.name,
                "size": g.size,
                "slots": g.slots,
                **({"machine_type": g.machine_type} if g.machine_type else {}),
            }
        ),
    ),
    Key(
        "worker_release_seconds",
        parse_duration,
        600.0,
        "cluster stacks: how long the driver retries resizing the worker group to 0 (with backoff, "
        "reading it back) before it says the group is not released and exits 9",
    ),
    Key(
        "models_source",
        _models_source,
        None,
        'cluster stacks: {"bucket": "...", "path": "..."} the workers fetch the models from before their '
        "first run of a tool that needs them (written by the stack; without it the models must be at "
        "models_dir on every node)",
        dump=lambda m: None if m is None else {"bucket": m[0], "path": m[1]},
    ),
    Key(
        "max_cost_usd",
        _non_negative_float,
        0.0,
        "cluster stacks: admit no run the cap cannot pay for (head and workers at cost_rates); at the "
        "cap the worker group is released and the batch stops with exit 10; 0 = no cap",
        flag="--max-cost-usd",
        metavar="USD",
    ),
    Key(
        "cost_rates",
        _cost_rates,
        None,
        'cluster stacks: {"head_usd_per_hour": H, "worker_usd_per_hour": W} from the stack\'s price '
        "table, what max_cost_usd counts (written by the stack)",
        dump=lambda r: None if r is None else dict(r),
    ),
    Key(
        "shutdown_when_done",
        _boolean,
        False,
        "power the machine off when every run is finished and everything is uploaded",
    ),
    Key("build", _boolean, True, "do not build missing images", flag="--no-build", kind="off"),
    Key(
        "stop_grace_seconds",
        _stop_grace,
        10.0,
        "seconds the API gets to flush on stop, at most 20",
        flag="--stop-grace",
        metavar="SECONDS",
        resumable=True,
    ),
    Key(
        "coverage_interval",
        parse_duration,
        5.0,
        "seconds between coverage samples",
        flag="--coverage-interval",
        metavar="SECONDS",
        resumable=True,
    ),
    Key(
        "preflight",
        _boolean,
        True,
        "start the real runs without the smoke run of each API (default: preflight on)",
        flag="--no-preflight",
        kind="off",
    ),
    Key(
        "preflight_seconds",
        parse_duration,
        30.0,
        "budget of each preflight smoke run",
        flag="--preflight-seconds",
        metavar="SECONDS",
    ),
    Key(
        "skip_broken_apis",
        _boolean,
        False,
        "leave an API that fails its preflight out of the batch instead of stopping",
        flag="--skip-broken-apis",
        kind="on",
    ),
    Key(
        "labels",
        _labels,
        (),
        "extra label on every container and network (repeatable)",
        flag="--label",
        metavar="KEY=VALUE",
        kind="pairs",
        dump=dict,
    ),
    Key(
        "tool_build_args",
        _tool_build_args,
        (),
        'per tool, build arguments over its own [build_args]: {"<tool>": {"ARG": "value"}}',
        dump=lambda value: {tool: dict(args) for tool, args in value},
    ),
    Key(
        "tool_env",
        _tool_env,
        (),
        'per tool, environment variables of its container: {"<tool>": {"NAME": "value"}} (e.g. the '
        "restgym preset's Schemathesis options)",
        resumable=True,
        dump=lambda value: {tool: dict(env) for tool, env in value},
    ),
    Key(
        "shuffle",
        _boolean,
        False,
        "shuffle the run order within each repetition (seeded by --seed; a resumed batch keeps its order)",
        flag="--shuffle",
        kind="on",
        resumable=True,
    ),
    Key(
        "seed",
        _seed,
        None,
        "the batch's seed: it shuffles the run order and gives every run its own seed (passed as SEED "
        "to tools that accept one); drawn at random and recorded in plan.json when not given",
        flag="--seed",
        metavar="N",
        resumable=True,
        shown="drawn at random, recorded",
    ),
    Key(
        "max_tool_restarts",
        _restarts,
        3,
        "a run whose tool restarted more often than this fails verification",
    ),
    Key(
        "ray",
        _ray_address,
        None,
        "cluster mode: place the runs on the Ray cluster at ADDRESS: auto (the cluster this machine is "
        "a node of) or HOST:PORT of its head (docs/cluster.md)",
        flag="--ray",
        metavar="ADDRESS",
        shown="none, this machine alone",
    ),
    Key(
        "registry",
        _registry,
        None,
        "image registry prefix: the images built here are pushed to <registry>/<image> and the cluster's "
        "nodes pull them from there, e.g. 127.0.0.1:5000/llamaresttest",
        flag="--registry",
        metavar="PREFIX",
        shown="none",
    ),
)
_BY_NAME = {k.name: k for k in KEYS}
#: keys of the config file (and of plan.json's "settings")
CONFIG_KEYS = frozenset(_BY_NAME)
#: keys with a ``run`` flag, in the order of ``--help``
FLAG_KEYS = tuple(k.name for k in KEYS if k.flag is not None)
#: keys whose relative paths in a config file are relative to the file's folder
PATH_KEYS = tuple(k.name for k in KEYS if k.path)
#: keys a resumed batch takes from its plan.json
RESUMABLE_KEYS = tuple(k.name for k in KEYS if k.resumable)
#: fields of :class:`Settings` that are no setting: derived while merging, never read from a file
DERIVED_FIELDS = ("batch_must_exist",)


def setting(name: str) -> Key:
    """The schema entry of a setting (KeyError for an unknown name)."""
    return _BY_NAME[name]


def _default(name: str) -> Any:
    return _BY_NAME[name].default


@dataclass(frozen=True)
class Settings:
    """Typed settings; every default is the one in :data:`KEYS` (what each setting means: its help)."""

    preset: str | None = _default("preset")
    catalog: Path = _default("catalog")
    results: Path = _default("results")
    batch: str | None = _default("batch")
    #: True when the batch was named on the command line (it must exist: resume only); a batch named
    #: in the config file is created when absent, else resumed (what the systemd unit needs).
    batch_must_exist: bool = False
    apis: tuple[str, ...] = _default("apis")  # empty: every API of the catalog
    tools: tuple[str, ...] = _default("tools")  # empty: every tool of the catalog
    runs: int = _default("runs")
    budget_seconds: float = _default("budget_seconds")
    cpus_per_container: float = _default("cpus_per_container")
    memory_per_container: int = _default("memory_per_container")  # bytes
    min_free_cpus: float = _default("min_free_cpus")
    #: bytes the results disk must keep free: below it nothing more is admitted (the batch pauses,
    #: and ends with the disk-full exit code once its running experiments are done); 0 switches it off
    min_free_disk: int = _default("min_free_disk")
    max_attempts: int = _default("max_attempts")
    #: exit code 5 (exit_codes.ENGINE_UNAVAILABLE) after this; the batch is resumable
    engine_wait_seconds: float = _default("engine_wait_seconds")
    worker_wait_seconds: float = _default("worker_wait_seconds")
    models_dir: Path = _default("models_dir")
    upload: Upload | None = _default("upload")
    worker_group: WorkerGroup | None = _default("worker_group")
    worker_release_seconds: float = _default("worker_release_seconds")
    models_source: tuple[str, str] | None = _default("models_source")
    max_cost_usd: float = _default("max_cost_usd")
    cost_rates: tuple[tuple[str, float], ...] | None = _default("cost_rates")
    shutdown_when_done: bool = _default("shutdown_when_done")
    build: bool = _default("build")
    stop_grace_seconds: float = _default("stop_grace_seconds")  # docker stop -t for the API
    coverage_interval: float = _default("coverage_interval")
    #: one short smoke run per selected API before the first real run (remote_runner.experiment.preflight)
    preflight: bool = _default("preflight")
    #: seconds of each smoke run (the tool's budget; readiness waits come on top)
    preflight_seconds: float = _default("preflight_seconds")
    skip_broken_apis: bool = _default("skip_broken_apis")
    labels: tuple[tuple[str, str], ...] = _default("labels")
    tool_build_args: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = _default("tool_build_args")
    tool_env: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = _default("tool_env")
    shuffle: bool = _default("shuffle")
    seed: int | None = _default("seed")
    max_tool_restarts: int = _default("max_tool_restarts")  # see verification.py
    ray: str | None = _default("ray")
    registry: str | None = _default("registry")

    @property
    def env_by_tool(self) -> dict[str, dict[str, str]]:
        return {tool: dict(env) for tool, env in self.tool_env}

    @property
    def build_args_by_tool(self) -> dict[str, dict[str, str]]:
        return {tool: dict(args) for tool, args in self.tool_build_args}

    @property
    def memory_bytes(self) -> int:
        return self.memory_per_container

    @property
    def min_free_disk_bytes(self) -> int:
        return self.min_free_disk

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON (plan.json's "settings"); sizes in bytes. :func:`merge` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            dump = _BY_NAME[f.name].dump if f.name in _BY_NAME else None
            out[f.name] = dump(value) if dump is not None else value
        return out


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    setting = _BY_NAME.get(name)
    if setting is None:
        problems.append(f"unknown setting {name!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
        return None
    try:
        return setting.read(value)
    except Problems as exc:
        problems.extend(exc.problems)
    except (TypeError, ValueError) as exc:
        problems.append(f"{name}: {exc}")
    return None


def merge(
    config: Mapping[str, Any] | None, flags: Mapping[str, Any], base: Settings | None = None
) -> tuple[Settings, list[str]]:
    """Defaults (or ``base``) < the preset's settings (``preset`` of the flags, else of ``config``;
    :mod:`remote_runner.batch.presets`) < ``config`` (the JSON file's object) < ``flags`` (None = not given).

    Returns the settings and every problem found; values with a problem keep their default.
    """
    problems: list[str] = []
    settings = base or Settings()
    changes: dict[str, Any] = {}
    from remote_runner.batch.presets import PRESETS

    name = flags.get("preset") or (config or {}).get("preset")
    if isinstance(name, str) and name in PRESETS:  # an unknown name is reported by the loop below
        for key, value in PRESETS[name].settings.items():
            changes[key] = _BY_NAME[key].read(value)
    for source_name, source in (("config", config or {}), ("flag", flags)):
        for name, value in source.items():
            if value is None and source_name == "flag":
                continue
            coerced = _coerce(name, value, problems)
            if coerced is None and value is not None:
                continue
            changes[name] = coerced
    if flags.get("batch"):
        changes["batch_must_exist"] = True
    return replace(settings, **changes), problems


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
    # itself (remote_runner.placement.cluster.fit_problem), not against the driver's machine
    local = not settings.ray
    need_cpus = 2 * settings.cpus_per_container
    if local and need_cpus > machine.cpus:
        problems.append(
            f"an experiment needs {need_cpus:g} CPUs (2 containers x --cpus-per-container "
            f"{settings.cpus_per_container:g}) but this machine has {machine.cpus}: "
            "lower --cpus-per-container"
        )
    need_memory = 2 * settings.memory_bytes
    if local and need_memory > machine.memory_bytes:
        problems.append(
            f"an experiment needs {need_memory / 1024**3:.1f} GiB (2 containers x --memory-per-container "
            f"{format_size(settings.memory_per_container)}) but this machine has "
            f"{machine.memory_bytes / 1024**3:.1f} GiB"
        )
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
