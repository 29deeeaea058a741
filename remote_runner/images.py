"""Image builds: ``llamaresttest/infrastructure`` first (when ``infrastructure/`` has a Dockerfile; it
is the base of every API image), then ``llamaresttest/api-<name>`` and ``llamaresttest/tool-<name>``.
The build context of each image is its own folder."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from remote_runner.catalog import INFRASTRUCTURE_IMAGE, Catalog
from remote_runner.docker_runtime import Docker, DockerError

log = logging.getLogger("remote_runner.images")
LOG_TAIL_LINES = 40


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
    for target in build_targets:
        if only_missing and docker.image_id(target.image) is not None:
            continue
        if target.kind == "api" and infra_failed:
            problems.append(f"{target.image}: not built, because {INFRASTRUCTURE_IMAGE} failed")
            continue
        say(f"building {target.image} from {target.context}")
        result = docker.build(target.image, target.context, build_args=dict(target.build_args))
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
    from remote_runner.cluster import registry_image

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
