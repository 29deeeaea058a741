"""Image builds: ``llamaresttest/infrastructure`` first (when ``infrastructure/`` has a Dockerfile; it
is the base of every API image), then ``llamaresttest/api-<name>`` and ``llamaresttest/tool-<name>``.
The build context of each image is its own folder.

Every image carries the digest of its build inputs as the label :data:`INPUTS_LABEL`: the sha256 of
every file of its context (path and content) and its build arguments, and for API images the
infrastructure's digest (they are built FROM it). ``only_missing`` builds an image that is missing
or whose label differs from today's inputs, so changed ``tool_build_args`` (another upstream commit)
or an edited entrypoint rebuild the image instead of reusing the old one (issue 22). An image without
the label was built outside the runner (by hand, by a test's fixture): its inputs are unknown, and it
is used as it is, as before."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from remote_runner.experiment.catalog import INFRASTRUCTURE_IMAGE, Catalog
from remote_runner.experiment.docker_runtime import Docker, DockerError

log = logging.getLogger("remote_runner.experiment.images")
LOG_TAIL_LINES = 40
INPUTS_LABEL = "llamaresttest.build-inputs"


def inputs_digest(target: BuildTarget, base: str = "") -> str:
    """sha256 of the target's build inputs: each file of its context (relative path and bytes, in
    path order), its build arguments and ``base`` (the digest of the image it is built FROM)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in target.context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(target.context)).encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    for name, value in target.build_args:
        digest.update(f"--build-arg {name}={value}\0".encode())
    digest.update(base.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class BuildTarget:
    name: str  # "infrastructure", or the API/tool name
    kind: str  # "infrastructure", "api" or "tool"
    image: str
    context: Path
    #: ``--build-arg``s (a tool's ``[build_args]``, overridden by settings' ``tool_build_args``)
    build_args: tuple[tuple[str, str], ...] = ()


def targets(
    catalog: Catalog,
    apis: Iterable[str],
    tools: Iterable[str],
    tool_build_args: Mapping[str, Mapping[str, str]] | None = None,
) -> list[BuildTarget]:
    """Build order: infrastructure, APIs, tools (pure). ``tool_build_args`` (settings, per tool) win
    over the same names in the tool's own ``[build_args]``."""
    out: list[BuildTarget] = []
    api_list, tool_list = list(apis), list(tools)
    if catalog.infrastructure is not None and api_list:
        out.append(
            BuildTarget("infrastructure", "infrastructure", INFRASTRUCTURE_IMAGE, catalog.infrastructure)
        )
    out += [BuildTarget(n, "api", catalog.apis[n].image, catalog.apis[n].folder) for n in api_list]
    for n in tool_list:
        tool = catalog.tools[n]
        args = {**dict(tool.build_args), **dict((tool_build_args or {}).get(n, {}))}
        out.append(BuildTarget(n, "tool", tool.image, tool.folder, tuple(sorted(args.items()))))
    return out


def select_only(catalog: Catalog, only: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """``build --only NAME ...``: (apis, tools, problems). A name may be an API, a tool, or both."""
    apis, tools, problems = [], [], []
    for name in only:
        if name in catalog.apis:
            apis.append(name)
        if name in catalog.tools:
            tools.append(name)
        if name not in catalog.apis and name not in catalog.tools and name != "infrastructure":
            known = sorted({*catalog.apis, *catalog.tools})
            problems.append(f"unknown API or tool {name!r}; known: {', '.join(known) or '(none)'}")
    return apis, tools, problems


def build(
    build_targets: list[BuildTarget],
    docker: Docker,
    *,
    only_missing: bool = False,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Builds the targets in order; returns one problem per failed image (naming it, with its log's
    tail). API images are skipped when the infrastructure image failed: they are built FROM it."""
    problems: list[str] = []
    infra_failed = False
    infra_digest = ""
    for target in build_targets:
        wanted = inputs_digest(target, infra_digest if target.kind == "api" else "")
        if target.kind == "infrastructure":
            infra_digest = wanted
        if only_missing:
            info = docker.image_info(target.image)
            if info is not None:
                had = ((info.get("Config") or {}).get("Labels") or {}).get(INPUTS_LABEL)
                if had is None or had == wanted:
                    continue  # unchanged, or built outside the runner (its inputs are unknown: kept)
                say(f"rebuilding {target.image}: its build inputs changed (files or build arguments)")
        if target.kind == "api" and infra_failed:
            problems.append(f"{target.image}: not built, because {INFRASTRUCTURE_IMAGE} failed")
            continue
        say(f"building {target.image} from {target.context}")
        result = docker.build(
            target.image, target.context, labels={INPUTS_LABEL: wanted}, build_args=dict(target.build_args)
        )
        if result.ok:
            log.info("built %s", target.image)
            continue
        if target.kind == "infrastructure":
            infra_failed = True
        why = "timed out" if result.timed_out else f"exit {result.returncode}"
        problem = (
            f"building {target.image} from {target.context} failed ({why}); last lines of its log:\n"
            + "\n".join(f"    {line}" for line in result.tail(LOG_TAIL_LINES).splitlines())
        )
        log.error("%s", problem)
        problems.append(problem)
    return problems


def registry_image(registry: str, image: str) -> str:
    """The name of ``image`` in the cluster's registry (pushed by :func:`push`, pulled by the nodes)."""
    return f"{registry.rstrip('/')}/{image}"


def push(
    build_targets: list[BuildTarget],
    docker: Docker,
    registry: str,
    *,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Cluster mode: pushes each API and tool image built here to ``<registry>/<image>``, so the nodes
    pull them (built once, never on a node). A push of unchanged layers sends nothing. Returns one
    problem per image that failed (the infrastructure image is only a base: nodes never run it)."""
    problems: list[str] = []
    for target in build_targets:
        if target.kind == "infrastructure":
            continue
        remote = registry_image(registry, target.image)
        say(f"pushing {target.image} to {remote}")
        try:
            docker.tag(target.image, remote)
            docker.push(remote)
        except DockerError as exc:
            problems.append(f"{remote}: {exc} ({exc.result.tail(3)})")
    return problems
