"""Command line: ``python -m remote_runner {build,run,status,spec,faults,report,upload}``.

Every problem with the input is reported at once, before anything starts, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from remote_runner.batch import driver, family_check
from remote_runner.batch import lock as batch_lock
from remote_runner.batch import plan as plan_mod
from remote_runner.batch import settings as schema
from remote_runner.batch.settings import Settings, load_config, machine_facts, merge, validate
from remote_runner.common import exit_codes
from remote_runner.experiment import catalog as catalog_mod
from remote_runner.experiment import images, specs
from remote_runner.experiment.docker_runtime import Docker

EXIT_BAD_INPUT = exit_codes.BAD_INPUT
EXIT_BUILD_FAILED = exit_codes.BUILD_FAILED


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m remote_runner",
        description="Build the images and run the REST API testing experiment matrix "
        "on this machine's Docker engine.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build the infrastructure, API and tool images")
    build.add_argument(
        "--catalog", type=Path, help="root holding apis/, tools/, infrastructure/ (default: .)"
    )
    build.add_argument("--config", type=Path, help="settings JSON file (only 'catalog' is used)")
    build.add_argument("--only", nargs="+", metavar="NAME", default=[], help="build only these APIs/tools")

    run = sub.add_parser("run", help="run (or resume) a batch of experiments")
    run.add_argument("--config", type=Path, metavar="FILE", help="settings JSON file; flags override it")
    add_run_flags(run)

    status = sub.add_parser("status", help="progress of a batch")
    status.add_argument("--results", type=Path, default=None, help=f"results folder (default: {d.results})")
    status.add_argument("--batch", help="batch folder name (default: the newest)")
    status.add_argument("--json", action="store_true", help="print one JSON document and exit")
    status.add_argument("--once", action="store_true", help="print once even on a terminal")

    spec = sub.add_parser(
        "spec",
        help="the operations the harness counts in a spec, and what requests map to",
        description="Lists the operations the metrics count in FILE (OpenAPI 3 or Swagger 2, JSON or "
        "YAML) with the same code the run summaries use, and for each --match the operation a request "
        "maps to (or none).",
    )
    spec.add_argument("file", type=Path, metavar="FILE", help="the spec")
    spec.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="'METHOD /path'",
        help="a request to map, e.g. 'GET /rest/v1/users/7?x=1' (repeatable)",
    )
    spec.add_argument("--json", action="store_true", help='print {"operations": [...], "matches": {...}}')

    release = sub.add_parser(
        "release-workers",
        help="resize a cluster stack's worker group to 0 and read it back (the head's shutdown script)",
        description="Resizes the worker group named by the settings' worker_group to 0, retrying with "
        "backoff until it reads 0 or --budget runs out. Exit 0: the group reads 0 (or the settings name "
        "no group); 9: it does not.",
    )
    release.add_argument("--config", type=Path, metavar="FILE", required=True, help="settings JSON file")
    release.add_argument(
        "--budget", type=float, default=75.0, metavar="SECONDS", help="how long to keep trying (default: 75)"
    )

    from remote_runner.batch.forecast import add_arguments as forecast_arguments

    forecast_arguments(
        sub.add_parser(
            "forecast",
            help="wall-clock and cost of a cluster batch before spending (docs/cluster.md, Forecast)",
            description="A Monte Carlo model of a cluster batch: p50/p95 hours and USD per preemption rate.",
        )
    )

    fault_replay = sub.add_parser(
        "faults",
        help="replay every run's 5xx requests on a fresh service: confirmed, flaky or not reproduced "
        "(docs/results.md, Confirmed faults)",
        description="Replays each distinct 5xx request of every succeeded run of BATCH on a fresh container "
        "of the run's API image, k times alone and, unless that confirms it, k times after the run's "
        "preceding writes of the same session; keys confirmed faults by the API's logged stack trace. "
        "Writes <run>/faults.json; resumable (run it again to continue).",
    )
    add_fault_flags(fault_replay)

    sub.add_parser(
        "report",
        help="build the report of a batch (options: python -m remote_runner report --help)",
        add_help=False,
    )
    sub.add_parser(
        "upload",
        help="sync a batch folder to Cloud Storage (options: python -m remote_runner upload --help)",
        add_help=False,
    )
    return parser


def add_fault_flags(p: argparse.ArgumentParser) -> None:
    from remote_runner.batch import replay

    d = replay.Config()
    p.add_argument("batch", type=Path, metavar="BATCH", help="the batch folder")
    p.add_argument("--catalog", type=Path, default=Path("."), help="root holding apis/ (default: .)")
    p.add_argument(
        "--k", type=int, default=d.k, help=f"replays per way, each on fresh state (default: {d.k})"
    )
    p.add_argument(
        "--prefix-bound",
        type=int,
        default=d.prefix_bound,
        help=f"preceding writes of the session replayed first, at most (default: {d.prefix_bound})",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=d.settle_seconds,
        metavar="SECONDS",
        help=f"wait after the container is ready before replaying (default: {d.settle_seconds:g})",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=d.max_requests,
        help=f"distinct 5xx requests replayed per run, at most (default: {d.max_requests})",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=d.budget_seconds,
        metavar="SECONDS",
        help=f"replay time per run, at most; 0: no limit (default: {d.budget_seconds:g})",
    )
    p.add_argument(
        "--cpus", type=float, default=d.cpus, help=f"CPUs per replay container (default: {d.cpus:g})"
    )
    p.add_argument("--memory", default="1g", help="memory per replay container (default: 1g)")
    p.add_argument(
        "--no-share", action="store_true", help="a fresh container per replay even for a stateless run"
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="extra label of every container"
    )


def cmd_faults(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import psutil

    from remote_runner.batch import replay
    from remote_runner.placement import admission

    problems: list[str] = []
    batch_dir = args.batch.resolve()
    if not batch_dir.is_dir():
        problems.append(f"{args.batch}: no such batch folder")
    cat = catalog_mod.load(args.catalog)
    try:
        memory = schema.parse_memory(args.memory)
    except ValueError as exc:
        problems.append(f"--memory {args.memory!r}: {exc}")
        memory = 0
    labels: dict[str, str] = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    for name, value, low in (
        ("--k", args.k, 1),
        ("--max-requests", args.max_requests, 1),
        ("--prefix-bound", args.prefix_bound, 0),
    ):
        if value < low:
            problems.append(f"{name} must be at least {low}, got {value}")
    if args.cpus <= 0 or args.settle < 0 or args.budget < 0:
        problems.append("--cpus must be positive, --settle and --budget not negative")
    docker = Docker()
    engine = docker.engine_problem()
    if engine:
        problems.append(engine)
    if problems:
        _problems_out("cannot replay: fix these and run again", problems)
        return EXIT_BAD_INPUT
    cfg = replay.Config(
        k=args.k,
        prefix_bound=args.prefix_bound,
        settle_seconds=args.settle,
        max_requests=args.max_requests,
        budget_seconds=args.budget,
        cpus=args.cpus,
        memory_bytes=memory,
        share_stateless=not args.no_share,
        labels=tuple(sorted(labels.items())),
    )
    cpu_ids = tuple(sorted(os.sched_getaffinity(0)))
    machine = admission.Machine(len(cpu_ids), psutil.virtual_memory().total, cpu_ids)
    busy = psutil.cpu_percent(interval=1.0)  # sampled over an interval: never the meaningless first call
    measurement = admission.Measurement(
        free_cpus=(1 - busy / 100) * len(cpu_ids), available_memory=psutil.virtual_memory().available
    )
    slots = replay.replay_slots(machine, measurement, cfg.cpus, cfg.memory_bytes, wanted=len(cpu_ids))
    print(f"replaying {batch_dir.name}: {slots} replay container(s) at a time", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lrt-replay-") as scratch:
        done = replay.replay_batch(
            batch_dir, cat, docker, cfg, slots, Path(scratch), say=lambda m: print(m, file=sys.stderr)
        )
    incomplete = [f"{d['api']}/{d['tool']}/run-{d['run']}" for d in done if not d.get("complete")]
    if incomplete:
        _problems_out("replays that failed (run the command again to retry them)", incomplete)
        return 1
    return 0


def add_run_flags(run: argparse.ArgumentParser) -> None:
    """The ``run`` flags, one per setting of :data:`remote_runner.batch.settings.KEYS` that has one; each
    stores under the setting's name, None when not given (so the config file's value stands)."""
    for key in schema.KEYS:
        if key.flag is None:
            continue
        if key.kind == "value":
            shown = key.default_text
            run.add_argument(
                key.flag,
                dest=key.name,
                metavar=key.metavar,
                help=key.help if shown is None else f"{key.help} (default: {shown})",
            )
        elif key.kind in ("off", "on"):
            run.add_argument(
                key.flag, dest=key.name, action="store_const", const=key.kind == "on", help=key.help
            )
        else:  # pairs
            run.add_argument(key.flag, dest=key.name, action="append", metavar=key.metavar, help=key.help)


def _problems_out(title: str, problems: list[str]) -> None:
    print(f"{title}:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)


def _settings_from(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    """Defaults < config file < flags. Relative paths in a config file are relative to the file's
    folder (the systemd unit may start anywhere); relative paths in flags to the working directory."""
    config: dict[str, Any] = {}
    problems: list[str] = []
    if args.config:
        config, problems = load_config(args.config)
        base = args.config.resolve().parent
        for name in schema.PATH_KEYS:
            if isinstance(config.get(name), str) and config[name] and not Path(config[name]).is_absolute():
                config[name] = str(base / config[name])
    flags: dict[str, Any] = {k: getattr(args, k, None) for k in schema.FLAG_KEYS}
    for key in schema.KEYS:
        if key.kind == "pairs" and flags.get(key.name):  # KEY=VALUE items over the file's mapping
            pairs: dict[str, str] = {}
            for item in flags[key.name]:
                pair_key, sep, value = item.partition("=")
                if not sep or not pair_key:
                    problems.append(f"{key.flag} {item!r}: expected KEY=VALUE")
                pairs[pair_key] = value
            from_file = config.get(key.name)
            flags[key.name] = {**(dict(from_file) if isinstance(from_file, dict) else {}), **pairs}
    settings, more = merge(config, flags)
    problems += more
    settings = replace(settings, **{k: getattr(settings, k).resolve() for k in schema.PATH_KEYS})
    return settings, problems


def cmd_run(args: argparse.Namespace) -> int:
    settings, problems = _settings_from(args)
    place = None
    if not problems:
        place = driver.place_batch(settings)
        if place.resume:
            try:
                stored = driver.stored_settings(place.batch_dir, settings)
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"batch {place.batch_dir}: plan.json unreadable ({exc})")
            else:
                for key in driver.RESUMABLE_KEYS:
                    if getattr(args, key, None) is not None and getattr(stored, key) != getattr(
                        settings, key
                    ):
                        print(
                            f"note: resuming {place.batch_dir.name}: {key} stays {getattr(stored, key)!r} "
                            f"as planned (the flag is ignored)",
                            file=sys.stderr,
                        )
                settings = stored
                # one worker family per batch: refused before anything runs (family_check.py)
                group = settings.worker_group
                problem = family_check.worker_family_problem(
                    place.batch_dir, plan_mod.read(place.batch_dir)[1], group.machine_type if group else ""
                )
                if problem:
                    problems.append(problem)
    cat = catalog_mod.load(settings.catalog)
    docker = Docker()
    machine = machine_facts(docker.engine_problem())
    selection, more = validate(settings, cat, machine)
    problems += more
    for warning in cat.split_problems(selection.apis, selection.tools)[1]:
        print(f"warning: {warning}", file=sys.stderr)
    if not problems and settings.ray:
        problems += _cluster_problems(settings)
    if problems or place is None:
        _problems_out("cannot start: fix these and run again", problems)
        return EXIT_BAD_INPUT
    wanted = images.targets(cat, selection.apis, selection.tools, settings.build_args_by_tool)
    if settings.build:
        failed = images.build(wanted, docker, only_missing=True, say=lambda m: print(m, file=sys.stderr))
        if failed:
            _problems_out("image build failed", failed)
            return EXIT_BUILD_FAILED
        if settings.registry:  # built once here, pulled by the cluster's nodes
            failed = images.push(wanted, docker, settings.registry, say=lambda m: print(m, file=sys.stderr))
            if failed:
                _problems_out(f"pushing the images to {settings.registry} failed", failed)
                return EXIT_BUILD_FAILED
    elif not (settings.ray and settings.registry):
        # (cluster mode with a registry and --no-build: the images are in the registry already and
        # the nodes pull them; this machine, the driver, needs none of them)
        missing = [f"image {t.image} missing" for t in wanted if docker.image_id(t.image) is None]
        if missing:
            _problems_out("cannot start: build the images, or run without --no-build", missing)
            return EXIT_BAD_INPUT
    # One runner per batch: the folder is made atomically and locked before anything is written in it
    # (spec copies, journal, orphan clean-up); a second runner refuses here, naming the first.
    place = driver.claim(place)
    try:
        with batch_lock.hold(place.batch_dir):
            return _run_locked(settings, cat, selection, place, docker)
    except batch_lock.BatchBusy as exc:  # the folder is the live runner's: leave it exactly as it is
        print(f"cannot start: {exc}", file=sys.stderr)
        return exit_codes.BATCH_BUSY


def _cluster_problems(settings: Settings) -> list[str]:
    """Cluster mode, before anything is built or started: the cluster answers, and no node that is
    there already is too small (Ray would keep a task that fits no node waiting forever).

    At boot the head's Ray may come up after the runner: the connection is waited for, up to
    ``engine_wait_seconds``. Workers that have not joined yet are the batch's to wait for
    (``worker_wait_seconds``, with status saying so); nodes that are there but too small are refused
    at once. A problem here ends the runner for good (exit 2), so the worker group is released first."""
    import time

    from remote_runner.placement import cluster
    from remote_runner.placement.admission import Request

    deadline = time.monotonic() + settings.engine_wait_seconds
    problems: list[str] = []
    while True:
        try:
            cluster.connect(str(settings.ray))
            break
        except Exception as exc:  # Ray raises ConnectionError and a few of its own
            if time.monotonic() >= deadline:
                problems = [f"--ray {settings.ray}: no Ray cluster answers ({type(exc).__name__}: {exc})"]
                break
            print(f"waiting for the Ray cluster at {settings.ray}: {type(exc).__name__}", file=sys.stderr)
            time.sleep(5)
    if not problems:
        import ray

        nodes = cluster.nodes_from(ray.nodes())
        if any(n.alive and n.slots > 0 for n in nodes):
            problem = cluster.fit_problem(nodes, Request(settings.cpus_per_container, settings.memory_bytes))
            problems = [problem] if problem else []
    if problems:
        from remote_runner.placement import workers

        workers.release_workers(settings, "the cluster batch cannot start")
    return problems


def _run_locked(
    settings: Settings, cat: Any, selection: Any, place: driver.BatchPlace, docker: Docker
) -> int:
    if place.named and not place.resume and (place.batch_dir / "plan.json").is_file():
        print(
            f"cannot start: batch {place.batch_dir.name} was created by another runner meanwhile; "
            "run the same command again to resume it",
            file=sys.stderr,
        )
        return exit_codes.BATCH_BUSY
    # Before the first experiment: the batch's own copy of every selected API's spec (out of the API
    # image when the catalog has no file), so no manual extraction step is needed on the VM.
    fresh = place.created
    batch_specs, spec_problems = specs.collect(
        place.batch_dir,
        cat,
        selection.apis,
        docker,
        labels=dict(settings.labels),
        formats={cat.tools[t].spec_format for t in selection.tools},
    )
    if spec_problems:
        if fresh:  # leave no half-made batch folder behind: nothing was started
            shutil.rmtree(place.batch_dir, ignore_errors=True)
        _problems_out("cannot start: the specs could not be copied into the batch", spec_problems)
        return EXIT_BAD_INPUT
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("remote_runner").warning(
            "signal %d: admitting nothing more, stopping experiments", signum
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"batch folder: {place.batch_dir}", file=sys.stderr)
    code = driver.run_batch(
        settings, cat, selection.apis, selection.tools, place, stop, docker, specs=batch_specs
    )
    _print_closing_summary(place.batch_dir)
    return code


def _print_closing_summary(batch_dir: Path) -> None:
    """What a researcher looks at first: where the results are and the headline figures."""
    try:
        from remote_runner.analysis.report import document as report
        from remote_runner.analysis.report import tables

        table = report.console_summary(tables.load_runs(batch_dir))
    except Exception as exc:  # the batch's results are on disk whatever happens here
        print(f"(no summary table: {exc})", file=sys.stderr)
        return
    print(f"\nresults: {batch_dir}")
    for name in ("summary.csv", "report.md", "report.html"):
        if (batch_dir / name).exists():
            print(f"  {name}: {batch_dir / name}")
    print(f"\nmedian [Q1, Q3] over verified runs:\n{table}")


def cmd_build(args: argparse.Namespace) -> int:
    root = args.catalog
    problems: list[str] = []
    tool_args: dict[str, dict[str, str]] = {}
    if args.config:
        config, problems = load_config(args.config)
        if root is None:
            root = (args.config.resolve().parent / str(config.get("catalog", "."))).resolve()
        if "tool_build_args" in config:
            configured, more = merge({"tool_build_args": config["tool_build_args"]}, {})
            problems += more
            tool_args = configured.build_args_by_tool
    cat = catalog_mod.load(root or Path("."))
    problems += list(cat.problems)
    docker = Docker()
    engine = docker.engine_problem()
    if engine:
        problems.append(engine)
    if args.only:
        apis, tools, more = images.select_only(cat, args.only)
        problems += more
        build_targets = images.targets(cat, apis, tools, tool_args)
        if "infrastructure" in args.only and cat.infrastructure is not None and not apis:
            build_targets.insert(
                0,
                images.BuildTarget(
                    "infrastructure", "infrastructure", catalog_mod.INFRASTRUCTURE_IMAGE, cat.infrastructure
                ),
            )
    else:
        build_targets = images.targets(cat, sorted(cat.apis), sorted(cat.tools), tool_args)
    if problems:
        _problems_out("cannot build: fix these and run again", problems)
        return EXIT_BAD_INPUT
    if not build_targets:
        print(f"nothing to build under {cat.root}", file=sys.stderr)
        return 0
    failed = images.build(build_targets, docker)
    if failed:
        _problems_out(f"{len(failed)} of {len(build_targets)} images failed", failed)
        return EXIT_BUILD_FAILED
    print(f"built {len(build_targets)} images")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from remote_runner.batch import status

    return status.main(args.results or Settings().results, args.batch, as_json=args.json, once=args.once)


def spec_view(doc: dict[str, Any], requests: list[str]) -> tuple[dict[str, Any], list[str]]:
    """What ``spec`` prints: the counted operations and each request's operation (``None``: no
    operation), plus the problems with the requests given. Pure; the metrics' own matcher."""
    from remote_runner.analysis import metrics

    matcher = metrics.operation_matcher(doc)
    matches: dict[str, str | None] = {}
    problems: list[str] = []
    for item in requests:
        method, _, path = item.strip().partition(" ")
        path = path.strip()
        if method.upper() not in metrics.HTTP_METHODS or not path.startswith("/"):
            problems.append(f"--match {item!r}: expected 'METHOD /path', e.g. 'GET /users/1'")
            continue
        op = matcher.match(method, path)
        matches[f"{method.upper()} {path}"] = None if op is None else str(op)
    return {"operations": [str(o) for o in matcher.operations], "matches": matches}, problems


def cmd_spec(args: argparse.Namespace) -> int:

    from remote_runner.analysis import results

    doc, problem = results.load_spec(args.file)
    view, problems = spec_view(doc or {}, args.match)
    if problem:
        problems.insert(0, f"{args.file}: {problem}")
    elif not view["operations"]:
        problems.insert(0, f"{args.file}: no operations under 'paths' (is it an OpenAPI/Swagger document?)")
    if problems:
        _problems_out("cannot read the spec or the requests", problems)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"{len(view['operations'])} operations in {args.file}:")
    for op in view["operations"]:
        print(f"  {op}")
    for request, op in view["matches"].items():
        print(f"{request} -> {op or 'none (not counted as an operation)'}")
    return 0


def cmd_release_workers(args: argparse.Namespace) -> int:
    """The GCE shutdown script's call on a cluster head (any stop that is not a reboot: maxRunHours, a
    manual stop, the head's own power-off): no worker outlives the head."""
    from remote_runner.placement import workers

    raw, problems = load_config(args.config)
    try:
        group = schema.worker_group(raw.get("worker_group"))
    except ValueError as exc:
        problems.append(f"worker_group: {exc}")
    if problems:
        _problems_out(f"cannot read the worker group from {args.config}", problems)
        return EXIT_BAD_INPUT
    if group is None:
        print(f"{args.config} names no worker_group: nothing to release", file=sys.stderr)
        return 0
    released = workers.release_workers(
        Settings(worker_group=group), "release-workers", budget_seconds=args.budget
    )
    print(
        f"worker group {group.name}: {'at 0' if released else 'NOT at 0: resize it by hand'}", file=sys.stderr
    )
    return 0 if released else exit_codes.WORKERS_NOT_RELEASED


def cmd_forecast(args: argparse.Namespace) -> int:
    from remote_runner.batch import forecast

    settings, problems = _settings_from(args)
    return forecast.run(args, settings, problems)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from remote_runner.analysis.report import document as report  # type: ignore[attr-defined,unused-ignore]

        return int(report.main(argv[1:]) or 0)
    if argv and argv[0] == "upload":
        from remote_runner.cloud import upload

        return int(upload.main(argv[1:]) or 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "build": cmd_build,
        "status": cmd_status,
        "spec": cmd_spec,
        "release-workers": cmd_release_workers,
        "forecast": cmd_forecast,
        "faults": cmd_faults,
    }
    return handlers[args.command](args)
