"""The APIs and tools found on disk.

Every ``apis/<name>/`` folder with a Dockerfile is an API and every ``tools/<name>/`` folder with a
Dockerfile is a tool; ``api.toml`` / ``tool.toml`` beside the Dockerfile hold optional metadata
(defaults below and in docs/contracts.md). ``infrastructure/`` with a Dockerfile is the base image of
every API image. The root is the repository by default, or any folder given with ``--catalog``.

An API's spec is the file ``spec`` in its folder; when that file is absent, ``spec_in_image`` (its
absolute path inside the API image) says where to take it from. Either way the runner copies it into
each batch before the first experiment (:mod:`remote_runner.experiment.specs`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_runner.analysis import faults

INFRASTRUCTURE_IMAGE = "llamaresttest/infrastructure"
#: BATCH/specifications/ holds the batch's spec copies, beside the BATCH/<api>/ run folders
RESERVED_API_NAME = "specifications"

_API_KEYS: dict[str, type | tuple[type, ...]] = {
    "spec": str,
    "spec_in_image": str,
    "readiness_path": str,
    "readiness_timeout": (int, float),
    "service_port": int,
    "demo": bool,
    "analysis": dict,  # checked by faults.parse_analysis
}
_TOOL_KEYS: dict[str, type | tuple[type, ...]] = {
    "needs_models": bool,
    "spec_format": str,
    "build_args": dict,
    "accepts_seed": bool,
}
#: the spec formats a tool may declare (``spec_format`` in tool.toml)
OPENAPI3, SWAGGER2 = "openapi3", "swagger2"
SPEC_FORMATS = (OPENAPI3, SWAGGER2)


@dataclass(frozen=True)
class Api:
    name: str
    folder: Path
    spec: str  # relative to the folder
    readiness_path: str = "/"
    readiness_timeout: float = 300.0
    service_port: int = 8080
    demo: bool = False
    #: absolute path of the spec inside the API image, used when ``spec`` is not on disk
    spec_in_image: str | None = None
    #: fault cleaning, RESTgym similarity threshold, verification thresholds (``[analysis]``)
    analysis: faults.Analysis = field(default_factory=faults.Analysis)

    @property
    def image(self) -> str:
        return f"llamaresttest/api-{self.name}"

    @property
    def spec_path(self) -> Path:
        return self.folder / self.spec

    def spec_problem(self) -> str | None:
        """None when the spec can be had: on disk, or else out of the image (``spec_in_image``)."""
        if self.spec_path.is_file() or self.spec_in_image:
            return None
        return (
            f"API {self.name}: spec file {self.spec_path} missing: put it there (or point 'spec' in "
            f"{self.folder / 'api.toml'} at it), or set 'spec_in_image' there to the spec's absolute "
            "path inside the API image"
        )


@dataclass(frozen=True)
class Tool:
    name: str
    folder: Path
    needs_models: bool = False
    #: the spec format the tool reads: "openapi3" (default) or "swagger2" (the runner hands it that)
    spec_format: str = OPENAPI3
    #: ``[build_args]`` of tool.toml: ``docker build --build-arg`` for the tool's image (settings'
    #: ``tool_build_args`` override them per tool)
    build_args: tuple[tuple[str, str], ...] = ()
    #: its entrypoint passes the run's SEED to the tool (``accepts_seed`` in tool.toml)
    accepts_seed: bool = False

    @property
    def image(self) -> str:
        return f"llamaresttest/tool-{self.name}"


@dataclass(frozen=True)
class Catalog:
    root: Path
    apis: dict[str, Api] = field(default_factory=dict)
    tools: dict[str, Tool] = field(default_factory=dict)
    infrastructure: Path | None = None  # the folder, when it has a Dockerfile
    problems: tuple[str, ...] = ()  # metadata files that could not be read
    #: the same problems by entry: (("api"|"tool", name) or None for the catalog as a whole, problem)
    entry_problems: tuple[tuple[tuple[str, str] | None, str], ...] = ()

    def split_problems(self, apis: tuple[str, ...], tools: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """``(stopping, warnings)``: a broken metadata file of an API or tool the batch does not use
        is only a warning; everything else stops the batch. Catalogs built without ``entry_problems``
        treat every problem as stopping."""
        if not self.entry_problems:
            return list(self.problems), []
        used = {("api", a) for a in apis} | {("tool", t) for t in tools}
        stopping = [p for entry, p in self.entry_problems if entry is None or entry in used]
        warnings = [
            f"{p} (not used by this batch: ignored)" for e, p in self.entry_problems if e and e not in used
        ]
        return stopping, warnings


def _read_toml(
    path: Path, allowed: dict[str, type | tuple[type, ...]], problems: list[str]
) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{path}: cannot be read as TOML ({exc})")
        return {}
    good: dict[str, Any] = {}
    for key, value in data.items():
        expected = allowed.get(key)
        if expected is None:
            problems.append(f"{path}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")
        elif isinstance(value, bool) and expected is not bool:
            problems.append(f"{path}: {key} must be {_type_name(expected)}, not a boolean")
        elif not isinstance(value, expected):
            problems.append(f"{path}: {key} must be {_type_name(expected)}, got {value!r}")
        else:
            good[key] = value
    return good


_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_build_args(value: Any, where: str) -> tuple[dict[str, str], list[str]]:
    """Build arguments (a table of NAME = "value") and one problem per bad entry, naming ``where``."""
    if not isinstance(value, dict):
        return {}, [f'{where}: build_args must be a table of NAME = "value", got {value!r}']
    good: dict[str, str] = {}
    problems: list[str] = []
    for name, arg in value.items():
        if not _ARG_NAME.match(str(name)):
            problems.append(f"{where}: build argument name {name!r} is not a valid ARG name")
        elif isinstance(arg, bool) or not isinstance(arg, str | int | float):
            problems.append(f"{where}: build argument {name} must be a string, got {arg!r}")
        else:
            good[str(name)] = str(arg)
    return good, problems


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}
    if isinstance(expected, tuple):
        return "a number"
    return names.get(expected, expected.__name__)


def _folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and (p / "Dockerfile").is_file())


def load(root: Path) -> Catalog:
    """Reads the catalog under ``root`` (never raises for bad metadata: see ``Catalog.problems``)."""
    root = root.resolve()
    problems: list[str] = []
    apis: dict[str, Api] = {}
    entries: list[tuple[tuple[str, str] | None, str]] = []

    def owned(entry: tuple[str, str]) -> None:
        entries.extend((entry, p) for p in problems[len(entries) :])

    for folder in _folders(root / "apis"):
        meta = _read_toml(folder / "api.toml", _API_KEYS, problems)
        timeout = float(meta.get("readiness_timeout", 300.0))
        if timeout <= 0:
            problems.append(f"{folder / 'api.toml'}: readiness_timeout must be positive")
            timeout = 300.0
        path = str(meta.get("readiness_path", "/"))
        if not path.startswith("/"):
            problems.append(f"{folder / 'api.toml'}: readiness_path must start with '/'")
            path = "/" + path
        if folder.name == RESERVED_API_NAME:
            problems.append(
                f"{folder}: an API may not be called {RESERVED_API_NAME!r} (each batch keeps its spec "
                "copies in that folder); rename the folder"
            )
        in_image = meta.get("spec_in_image")
        if in_image is not None and not in_image.startswith("/"):
            problems.append(
                f"{folder / 'api.toml'}: spec_in_image must be an absolute path, got {in_image!r}"
            )
            in_image = None
        analysis, analysis_problems = faults.parse_analysis(
            meta.get("analysis", {}), str(folder / "api.toml"), faults.default_analysis(folder.name)
        )
        problems.extend(analysis_problems)
        apis[folder.name] = Api(
            name=folder.name,
            folder=folder,
            spec=str(meta.get("spec", f"specifications/{folder.name}-openapi.json")),
            readiness_path=path,
            readiness_timeout=timeout,
            service_port=int(meta.get("service_port", 8080)),
            demo=bool(meta.get("demo", False)),
            spec_in_image=in_image,
            analysis=analysis,
        )
        owned(("api", folder.name))
    tools: dict[str, Tool] = {}
    for folder in _folders(root / "tools"):
        toml_path = folder / "tool.toml"
        meta = _read_toml(toml_path, _TOOL_KEYS, problems)
        spec_format = str(meta.get("spec_format", OPENAPI3))
        if spec_format not in SPEC_FORMATS:
            problems.append(
                f"{toml_path}: spec_format must be one of {', '.join(SPEC_FORMATS)}, got {spec_format!r}"
            )
            spec_format = OPENAPI3
        build_args, arg_problems = check_build_args(meta.get("build_args", {}), str(toml_path))
        problems += arg_problems
        tools[folder.name] = Tool(
            name=folder.name,
            folder=folder,
            needs_models=bool(meta.get("needs_models", False)),
            spec_format=spec_format,
            build_args=tuple(sorted(build_args.items())),
            accepts_seed=bool(meta.get("accepts_seed", False)),
        )
        owned(("tool", folder.name))
    infra = root / "infrastructure"
    return Catalog(
        root=root,
        apis=apis,
        tools=tools,
        infrastructure=infra if (infra / "Dockerfile").is_file() else None,
        problems=tuple(problems),
        entry_problems=tuple(entries),
    )
