"""The batch's life around the admission loop (:mod:`remote_runner.batch.scheduler`): where the batch
lives and who holds it (place, claim, the lock), its settings on resume, the infrastructure check, the
placement it runs with (one machine or a Ray cluster), the hooks after each run (summary, upload), the
worker group's scale-in and release, and the end: summaries, report, final upload and power-off.

The admission rules are the scheduler's; this module decides nothing about which run starts when.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remote_runner.batch import disk, journal, plan, presets
from remote_runner.batch import lock as batch_lock
from remote_runner.batch import settings as settings_schema
from remote_runner.batch.scheduler import Sampler, Scheduler
from remote_runner.batch.settings import Settings
from remote_runner.common import clock, exit_codes
from remote_runner.experiment import specs as specs_mod
from remote_runner.experiment.catalog import Catalog
from remote_runner.experiment.lifecycle import (
    FAILED,
    SUCCEEDED,
    ExperimentSpec,
    Outcome,
    set_aside,
)
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement import admission
from remote_runner.placement.admission import (
    Machine,
    Policy,
    Request,
    Reservation,
)
from remote_runner.placement.local import LOST, Placement

log = logging.getLogger("remote_runner")

#: what a resumed batch takes from its plan.json: the settings marked resumable in the schema
RESUMABLE_KEYS = settings_schema.RESUMABLE_KEYS


@dataclass(frozen=True)
class BatchPlace:
    batch_dir: Path
    resume: bool
    #: the folder was named (``--batch`` or the config file): shared on purpose, the lock decides
    named: bool = False
    #: True once :func:`claim` made the folder for this runner (nothing else is in it yet)
    created: bool = False


def place_batch(settings: Settings) -> BatchPlace:
    """Where the batch lives: ``--batch NAME`` resumes it; ``batch`` in the config file creates it when
    absent, else resumes it; neither: a new ``batch-<UTC stamp>`` (made unique by :func:`claim`)."""
    results = settings.results
    if settings.batch:
        folder = results / settings.batch
        return BatchPlace(folder, resume=(folder / "plan.json").is_file(), named=True)
    return BatchPlace(results / f"batch-{clock.batch_stamp()}", resume=False)


def claim(place: BatchPlace) -> BatchPlace:
    """Makes the batch folder. A new unnamed batch gets a folder no other runner has: ``mkdir`` is
    atomic, so of two runners started in the same second one gets ``batch-<stamp>`` and the other
    ``batch-<stamp>-2``. A named batch's folder is shared on purpose: the lock decides who runs it."""
    folder = place.batch_dir
    if place.named or place.resume:
        existed = folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return replace(place, created=not existed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    base, n = folder, 1
    while True:
        try:
            folder.mkdir()
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
            continue
        return replace(place, batch_dir=folder, created=True)


def stored_settings(batch_dir: Path, current: Settings) -> Settings:
    """On resume the matrix and experiment parameters come from the batch's plan.json."""
    from remote_runner.batch.settings import merge

    _, stored = plan.read(batch_dir)
    resumable = {k: stored[k] for k in RESUMABLE_KEYS if k in stored}
    settings, _ = merge(resumable, {}, base=current)
    return settings


def attach_log(batch_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(batch_dir / "runner.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("remote_runner")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _hook(what: str, fn: Callable[[], Any]) -> Any:
    """Calls a results/upload/report/shutdown hook; a failure is logged, never fatal."""
    try:
        return fn()
    except Exception:
        log.error("%s failed\n%s", what, traceback.format_exc())
        return False


def run_batch(
    settings: Settings,
    catalog: Catalog,
    apis: tuple[str, ...],
    tools: tuple[str, ...],
    place: BatchPlace,
    stop: threading.Event,
    docker: Any,
    *,
    specs: Mapping[str, Path],
    machine: Machine | None = None,
) -> int:
    """Creates or resumes the batch and runs it under the batch's lock (:mod:`remote_runner.batch.lock`;
    raises :class:`remote_runner.batch.lock.BatchBusy` when another runner holds it). Returns the exit code
    (:mod:`remote_runner.common.exit_codes`).

    ``specs``: each API's spec as copied into the batch (:func:`remote_runner.experiment.specs.collect`); the
    tools get these copies and the run summaries read them."""
    place.batch_dir.mkdir(parents=True, exist_ok=True)
    with batch_lock.hold(place.batch_dir):
        return _run_batch_locked(
            settings, catalog, apis, tools, place, stop, docker, specs=specs, machine=machine
        )


def write_summary(
    batch_dir: Path, key: RunKey, settings: Settings, catalog: Catalog, specs: Mapping[str, Path]
) -> Any:
    """The run's ``summary.json`` (results module), computed the same way after the experiment and
    when a resume rebuilds it: the batch's spec copy, the API's analysis, the batch's thresholds."""
    api = catalog.apis.get(key.api)
    return importlib.import_module("remote_runner.analysis.results").write_run_summary(
        batch_dir / key.rel_dir,
        specs.get(key.api),
        settings.budget_seconds,
        analysis=api.analysis if api is not None else None,
        max_tool_restarts=settings.max_tool_restarts,
    )


def infrastructure_check(
    batch_dir: Path,
    key: RunKey,
    outcome: Outcome,
    settings: Settings,
    catalog: Catalog,
    specs: Mapping[str, Path],
    make_summary: Callable[[], Any] | None = None,
) -> Outcome:
    """The exclusion policy's re-run rule (remote_runner/analysis/verification.py): a succeeded attempt whose
    recording or sampling broke becomes a failed attempt, so the scheduler re-runs it (up to
    ``max_attempts``), with the reason in its metadata.json; any other attempt is returned as it is.
    ``make_summary``: how the summary is made (the batch's summary processes); then it is read back."""
    from remote_runner.analysis import verification

    summary = _hook(
        f"{key.label}: results.write_run_summary",
        make_summary or (lambda: write_summary(batch_dir, key, settings, catalog, specs)),
    )
    if make_summary is not None:
        try:
            summary = json.loads((batch_dir / key.rel_dir / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
    if not isinstance(summary, dict):
        return outcome
    infra, _flags = verification.classify_checks(summary)
    if not infra:
        return outcome
    reason = "infrastructure: " + "; ".join(infra)
    meta_path = batch_dir / key.rel_dir / "metadata.json"
    meta = {**outcome.metadata, "status": FAILED, "reason": reason, "infrastructure_problems": infra}
    tmp = meta_path.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(meta_path)
    log.warning("%s: %s; the attempt counts as failed and is re-run", key.label, reason)
    return Outcome(FAILED, reason, meta)


def rebuild_missing_summaries(
    batch_dir: Path, jour: journal.Journal, settings: Settings, catalog: Catalog, specs: Mapping[str, Path]
) -> list[RunKey]:
    """Idempotent finishing: a run's ``summary.json`` is derived state. Every finished run (succeeded
    or failed) whose folder lacks it (runner killed between the journal's update and the hook) gets it
    rebuilt from what the run left, exactly as :func:`write_summary` makes it. Returns the runs rebuilt."""
    rebuilt: list[RunKey] = []
    for row in jour.runs():
        if row.status not in journal.FINISHED:
            continue
        run_dir = batch_dir / row.key.rel_dir
        if not run_dir.is_dir() or (run_dir / "summary.json").is_file():
            continue

        def rebuild(key: RunKey = row.key) -> bool:
            write_summary(batch_dir, key, settings, catalog, specs)
            return True

        if _hook(f"{row.key.label}: rebuilding summary.json", rebuild):
            rebuilt.append(row.key)
    return rebuilt


def _run_batch_locked(
    settings: Settings,
    catalog: Catalog,
    apis: tuple[str, ...],
    tools: tuple[str, ...],
    place: BatchPlace,
    stop: threading.Event,
    docker: Any,
    *,
    specs: Mapping[str, Path],
    machine: Machine | None = None,
) -> int:
    import psutil

    from remote_runner.experiment import lifecycle as experiment

    batch_dir = place.batch_dir
    handler = attach_log(batch_dir)
    jour = journal.Journal(batch_dir / "journal.sqlite")
    request = Request(settings.cpus_per_container, settings.memory_bytes)
    driver = uuid.uuid4().hex  # cluster mode: this driver's label on its attempts' containers
    smoke_id = uuid.uuid4().hex  # the preflight's own batch id (its containers' label)
    pool: Any = None  # one machine: the batch's summary processes
    try:
        if settings.ray:  # the first worker may still be booting; a cluster that cannot run stops here
            from remote_runner.placement import workers

            # the images are pushed: now the workers (the group is created at 0), as many as the batch can use
            if place.resume:
                left = sum(1 for r in jour.runs() if r.status not in journal.FINISHED)
            else:
                left = max(len(apis) * len(tools) * settings.runs, len(apis) if settings.preflight else 0)
            workers.request_workers(settings, left, batch_dir=batch_dir)
            code = _await_workers(settings, batch_dir, request, stop)
            if code is not None:
                return code
        if not place.resume and settings.preflight:  # smoke run per API before any budget is spent
            from remote_runner.experiment import preflight

            smoke = _smoke_runner(
                settings, catalog, batch_dir, specs, docker, stop, smoke_id=smoke_id, driver=driver
            )
            kept = preflight.gate(settings, apis, tools, batch_dir, smoke, stop, parallel=bool(settings.ray))
            if kept is None:
                if stop.is_set():
                    return exit_codes.STOPPED
                _release_workers(settings, batch_dir, "the preflight stopped the batch")
                return preflight.EXIT_BROKEN
            apis = kept
        if place.resume:
            keys, _ = plan.read(batch_dir)
        else:
            if settings.seed is None:  # drawn once, recorded in plan.json: a resume keeps it
                settings = replace(settings, seed=random.SystemRandom().randrange(2**32))
            keys = plan.expand(apis, tools, settings.runs, settings.seed if settings.shuffle else None)
            jour.set_meta("batch_id", uuid.uuid4().hex)
            jour.set_meta("created", repr(clock.now()))
            plan.write(batch_dir, keys, settings.to_json(), presets.protocol(settings))
        order_of = plan.order_index(keys)
        jour.add_runs(keys)
        batch_id = jour.meta("batch_id") or uuid.uuid4().hex
        if jour.meta("batch_id") is None:
            jour.set_meta("batch_id", batch_id)
        if jour.meta("created") is None:
            jour.set_meta("created", repr(clock.now()))
        # a batch that was finished before this start (a restart of its VM: the spot schedule, or
        # `pulumi destroy` starting it for the final upload) powers off again, but not at once
        was_finished = bool(jour.meta("finished"))
        jour.set_meta("finished", "")
        log.info("%s batch %s in %s", "resuming" if place.resume else "starting", batch_dir.name, batch_dir)

        _remove_leftovers(docker, batch_id)
        requeued = jour.requeue_unfinished()
        if requeued:
            log.info(
                "re-queued %d runs cut short earlier: %s", len(requeued), ", ".join(k.label for k in requeued)
            )
        rebuilt = rebuild_missing_summaries(batch_dir, jour, settings, catalog, specs)
        if rebuilt:
            log.info(
                "rebuilt summary.json of %d finished runs: %s",
                len(rebuilt),
                ", ".join(k.label for k in rebuilt),
            )

        cpu_ids = tuple(sorted(os.sched_getaffinity(0)))
        machine = machine or Machine(len(cpu_ids), psutil.virtual_memory().total, cpu_ids)
        placement: Placement | None = None
        sampler: Sampler | None = None
        meter = _spend_meter(settings, jour, batch_dir)
        if (
            not settings.ray
        ):  # one machine: summaries in processes of their own (remote_runner/analysis/summaries.py)
            from remote_runner.analysis import summaries

            pool = summaries.SummaryPool(summaries.pool_size(settings.min_free_cpus, machine.cpus))
        if settings.ray:
            jour.set_meta("driver", driver)
            placement = _ray_placement(
                settings, catalog, batch_dir, batch_id, driver, jour, specs, request, stop
            )
        else:
            sampler = Sampler(machine.cpus)

        def start(key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
            if attempt > 1:  # leftovers of an attempt cut short by a kill or reboot
                set_aside(batch_dir / key.rel_dir, attempt - 1)
            sets = [admission.cpuset_arg(s) if s else None for s in reservation.cpusets]
            spec = experiment_spec(settings, catalog, batch_dir, batch_id, specs, key, attempt)
            spec = replace(spec, api_cpuset=sets[0], tool_cpuset=sets[1], order=order_of.get(key))
            outcome = experiment.run(spec, docker, stop)
            if outcome.status != SUCCEEDED:
                return outcome
            return infrastructure_check(
                batch_dir, key, outcome, settings, catalog, specs, make_summary=lambda: summarise(key)
            )

        def before_retry(key: RunKey, attempt: int) -> None:
            set_aside(batch_dir / key.rel_dir, attempt)

        sync_lock = threading.Lock()  # one sync of the batch folder at a time

        def summarise(key: RunKey) -> Any:
            if (batch_dir / key.rel_dir / "summary.json").is_file():
                return True  # made where the run ran (cluster mode)
            if pool is None:
                return write_summary(batch_dir, key, settings, catalog, specs)
            api = catalog.apis.get(key.api)
            analysis = api.analysis if api is not None else None
            return pool.run(
                batch_dir / key.rel_dir,
                specs.get(key.api),
                settings.budget_seconds,
                analysis,
                settings.max_tool_restarts,
            )

        def on_finished(key: RunKey, outcome: Outcome, final: str) -> None:
            _hook(f"{key.label}: results.write_run_summary", lambda: summarise(key))
            if settings.upload is not None:
                with sync_lock:
                    growing = [batch_dir / k.rel_dir for k in scheduler.running_keys()]
                    if _upload_complete(_sync(batch_dir, settings, in_progress=growing)):
                        jour.mark_uploaded([key])

        scheduler = Scheduler(
            jour=jour,
            machine=machine,
            policy=Policy(settings.min_free_cpus),
            request_for=lambda _k: request,
            start=start,
            measure=sampler.measure if sampler is not None else None,
            max_attempts=settings.max_attempts,
            stop=stop,
            before_retry=before_retry,
            on_finished=_guarded(on_finished),
            disk_check=lambda: (
                disk.below_floor(batch_dir, settings.min_free_disk_bytes)
                if settings.min_free_disk_bytes > 0
                else None
            ),
            engine_problem=docker.engine_problem,
            recover=lambda: _remove_leftovers(docker, batch_id),
            engine_wait_seconds=settings.engine_wait_seconds,
            placement=placement,
            admission_limit=(lambda running, left: meter.limit(running, left + running)) if meter else None,
            when_nothing_pending=_scale_in(settings, placement, batch_dir),
        )
        completed = scheduler.run()
        if meter is not None:
            meter.flush(sum(1 for r in jour.runs() if r.status not in journal.FINISHED))
        if sampler is not None:
            sampler.close()
        if settings.ray:  # no container of the batch outlives it, on any node still alive
            from remote_runner.placement import cluster

            _hook(
                "removing the batch's containers on every node",
                lambda: cluster.clean_nodes([batch_id, smoke_id]),
            )
        if scheduler.engine_unavailable is not None:
            log.error("%s", scheduler.engine_unavailable)
            print(scheduler.engine_unavailable, file=sys.stderr)
            return exit_codes.ENGINE_UNAVAILABLE
        if scheduler.disk_full is not None:
            line = scheduler.disk_full
            if not line.startswith("disk full: ") or " free" not in line:
                line = disk.full_message(batch_dir, line)
            log.error("%s", line)
            print(line, file=sys.stderr)
            _release_workers(settings, batch_dir, "the head's disk is full")  # the unit does not restart
            return exit_codes.DISK_FULL
        if scheduler.cap_reached is not None and meter is not None:
            line = (
                f"cost cap reached: ${meter.spent:.2f} spent of max_cost_usd ${meter.cap:.2f}; "
                f"{scheduler.cap_reached} (about ${meter.per_run:.2f} each): raise the cap and resume"
            )
            log.error("%s", line)
            print(line, file=sys.stderr)
            _release_workers(settings, batch_dir, "the cost cap is reached")
            _hook("results.write_batch_summary", lambda: write_batch_summary(batch_dir))
            return exit_codes.CAP_REACHED
        if not completed:
            log.info(
                "stopped: running experiments were stopped and marked interrupted; resume with "
                "`python -m remote_runner run --results %s --batch %s`",
                settings.results,
                batch_dir.name,
            )
            return exit_codes.STOPPED
        unfinished = [r.key.label for r in jour.runs() if r.status not in journal.FINISHED]
        if unfinished:  # "done" only when every run succeeded or failed for a reason of its own
            log.error("not done: %d runs unfinished (%s); resume the batch", len(unfinished), unfinished)
            return exit_codes.STOPPED
        jour.set_meta("finished", repr(clock.now()))
        counts = jour.counts()
        log.info("batch done: %s", json.dumps(counts))
        # no run pending or running: the workers go now, before the report and the final upload
        released = _release_workers(settings, batch_dir, "no run is pending or running")
        _finish_batch(
            batch_dir,
            settings,
            jour,
            workers_released=released,
            hold_seconds=RESTART_POWER_OFF_HOLD_SECONDS if was_finished else 0.0,
            stop=stop,
        )
        if released is False:
            print(
                "the batch is done but the worker group did not read 0: the head stays up (see "
                "`status` and the log)",
                file=sys.stderr,
            )
            return exit_codes.WORKERS_NOT_RELEASED
        return exit_codes.DONE_WITH_FAILURES if counts.get(journal.FAILED) else exit_codes.DONE
    finally:
        if pool is not None:
            pool.close()
        jour.close()
        logging.getLogger("remote_runner").removeHandler(handler)
        handler.close()


def experiment_spec(
    settings: Settings,
    catalog: Catalog,
    batch_dir: Path,
    batch_id: str,
    specs: Mapping[str, Path],
    key: RunKey,
    attempt: int,
) -> ExperimentSpec:
    """One attempt's experiment as the batch defines it, without CPU ids (the placement adds them):
    the run folder and the spec copies in the batch (the tool's in its format, made by specs.collect
    before the batch started). The same on one machine and, before a node takes it, in cluster mode."""
    tool = catalog.tools[key.tool]
    tool_spec = specs_mod.copy_for(batch_dir, key.api, tool.spec_format) or specs[key.api]
    return ExperimentSpec(
        batch=batch_dir.name,
        batch_id=batch_id,
        key=key,
        attempt=attempt,
        run_dir=batch_dir / key.rel_dir,
        api=catalog.apis[key.api],
        tool=tool,
        budget_seconds=settings.budget_seconds,
        cpus=settings.cpus_per_container,
        api_cpuset=None,
        tool_cpuset=None,
        memory_bytes=settings.memory_bytes,
        spec_file=specs[key.api],
        tool_spec_file=tool_spec,
        base_path=specs_mod.base_path_of(tool_spec),
        stop_grace_seconds=settings.stop_grace_seconds,
        coverage_interval=settings.coverage_interval,
        models_dir=settings.models_dir,
        extra_labels=settings.labels,
        seed=None if settings.seed is None else plan.run_seed(settings.seed, key),
        tool_env=tuple(sorted(settings.env_by_tool.get(key.tool, {}).items())),
        build_args=tuple(
            sorted({**dict(tool.build_args), **settings.build_args_by_tool.get(key.tool, {})}.items())
        ),
        preset=settings.preset,
    )


def _payload(settings: Settings, spec: ExperimentSpec, driver: str, *, upload: bool) -> Any:
    """One attempt's :class:`remote_runner.placement.cluster.AttemptPayload`: the spec files travel as bytes,
    so nodes need no shared file system."""
    from remote_runner.placement import cluster

    target = settings.upload if upload else None
    return cluster.AttemptPayload(
        spec=spec,
        driver=driver,
        spec_bytes=spec.spec_file.read_bytes(),
        tool_spec_bytes=(spec.tool_spec_file or spec.spec_file).read_bytes(),
        registry=settings.registry,
        upload_bucket=target.bucket if target else None,
        upload_path=target.path if target else "",
        scratch=os.environ.get(cluster.SCRATCH_ENV, cluster.DEFAULT_SCRATCH),
        models=settings.models_source,
        max_tool_restarts=settings.max_tool_restarts,
    )


def _ray_placement(
    settings: Settings,
    catalog: Catalog,
    batch_dir: Path,
    batch_id: str,
    driver: str,
    jour: journal.Journal,
    specs: Mapping[str, Path],
    request: Request,
    stop: threading.Event,
) -> Placement:
    """Cluster mode (:mod:`remote_runner.placement.cluster`): one Ray task per attempt; the driver (this
    process) keeps the journal."""
    from remote_runner.placement import cluster

    context = cluster.connect(str(settings.ray))

    def payload_for(key: RunKey, attempt: int) -> Any:
        if attempt > 1:  # what an earlier attempt handed back, kept whole
            set_aside(batch_dir / key.rel_dir, attempt - 1)
        spec = experiment_spec(settings, catalog, batch_dir, batch_id, specs, key, attempt)
        return _payload(settings, spec, driver, upload=True)

    placement = cluster.RayPlacement(
        request,
        payload_for,
        run_dir_for=lambda key: batch_dir / key.rel_dir,
        stop=stop,
        on_placed=jour.place_attempt,
        status_file=batch_dir / "cluster.json",
        dashboard=cluster.dashboard_url(context),
    )
    nodes = placement.nodes(fresh=True)
    log.info(
        "cluster: %d alive nodes, room for %d experiments at once; dashboard %s",
        sum(n.alive for n in nodes),
        cluster.capacity(nodes, request),
        placement.dashboard or "-",
    )
    return placement


#: a smoke run whose worker was lost (spot) is tried again this many times before it counts
SMOKE_LOST_TRIES = 3


def _smoke_runner(
    settings: Settings,
    catalog: Catalog,
    batch_dir: Path,
    specs: Mapping[str, Path],
    docker: Any,
    stop: threading.Event,
    *,
    smoke_id: str,
    driver: str,
) -> Callable[[RunKey, Path], Outcome]:
    """The preflight's smoke run: the batch's own experiment (the same spec the real runs get, the
    tool's spec format included) with ``preflight_seconds`` of budget, into ``BATCH/preflight/<api>``.
    On one machine it runs on this engine; in cluster mode it goes to the workers through the same
    placement as the real runs: the head (the smallest machine) runs no experiment container."""
    from remote_runner.experiment import lifecycle as experiment

    def spec_for(key: RunKey, folder: Path) -> ExperimentSpec:
        spec = experiment_spec(settings, catalog, batch_dir, smoke_id, specs, key, 1)
        return replace(
            spec,
            batch=f"{batch_dir.name}-preflight",
            run_dir=folder,
            budget_seconds=settings.preflight_seconds,
            coverage_interval=min(settings.coverage_interval, max(1.0, settings.preflight_seconds / 4)),
        )

    if not settings.ray:
        return lambda key, folder: experiment.run(spec_for(key, folder), docker, stop)
    from remote_runner.placement import cluster

    request = Request(settings.cpus_per_container, settings.memory_bytes)
    folders: dict[RunKey, Path] = {}
    placement = cluster.RayPlacement(
        request,
        lambda key, _attempt: _payload(settings, spec_for(key, folders[key]), driver, upload=False),
        run_dir_for=lambda key: folders[key],
        stop=stop,
    )

    def smoke(key: RunKey, folder: Path) -> Outcome:
        folders[key] = folder
        outcome = Outcome(LOST, "not started")
        for attempt in range(1, SMOKE_LOST_TRIES + 1):
            reservation = Reservation(key, request, tuple(() for _ in range(request.containers)))
            outcome = placement.start(key, reservation, attempt)
            if outcome.status != LOST or stop.is_set():
                break
            log.warning("preflight: %s lost its worker (%s); placing it again", key.api, outcome.reason)
        return outcome

    return smoke


def _await_workers(
    settings: Settings, batch_dir: Path, request: Request, stop: threading.Event
) -> int | None:
    """Cluster mode, before the preflight: waits for a first worker (``worker_wait_seconds``; status
    says "N of M workers joined"), then checks that an experiment fits a node. Returns an exit code
    when the batch cannot go on (the workers are released first), else None."""
    import ray

    from remote_runner.placement import cluster, workers

    cluster.connect(str(settings.ray))
    waited = workers.wait_for_workers(
        lambda: workers.joined_workers(cluster.nodes_from(ray.nodes())),
        give_up_seconds=settings.worker_wait_seconds,
        stop=stop,
        expected=lambda: workers.group_size(settings),
        batch_dir=batch_dir,
    )
    if stop.is_set():
        return exit_codes.STOPPED
    if waited.gave_up:
        print(waited.message, file=sys.stderr)
        released = _release_workers(settings, batch_dir, "no worker joined")
        if settings.shutdown_when_done and released is not False:
            _hook("shutdown", lambda: _power_off_head("no worker joined within worker_wait_seconds"))
        return exit_codes.NO_WORKERS
    problem = cluster.fit_problem(cluster.nodes_from(ray.nodes()), request)
    if problem is not None:
        log.error("%s", problem)
        print(f"cannot start: {problem}", file=sys.stderr)
        _release_workers(settings, batch_dir, "no worker fits an experiment")
        return exit_codes.BAD_INPUT
    return None


def _scale_in(settings: Settings, placement: Any, batch_dir: Path) -> Callable[[], None] | None:
    """Cluster stacks: idle workers go once nothing is pending
    (:class:`remote_runner.placement.workers.ScaleIn`)."""
    if not settings.ray or settings.worker_group is None or settings.worker_group.size <= 0:
        return None
    from remote_runner.placement import workers

    return workers.ScaleIn(settings, placement.busy_instances, batch_dir=batch_dir)


def write_batch_summary(batch_dir: Path) -> Any:
    return importlib.import_module("remote_runner.analysis.results").write_batch_summary(batch_dir)


def _spend_meter(settings: Settings, jour: journal.Journal, batch_dir: Path) -> Any:
    """The spend cap's meter (:mod:`remote_runner.cloud.spend`), or None without a cap or without rates."""
    if settings.max_cost_usd <= 0:
        return None
    if settings.cost_rates is None:
        log.warning("max_cost_usd is set but cost_rates is not (the stack writes them): no cap")
        return None
    from remote_runner.cloud import spend
    from remote_runner.placement import workers

    rates = spend.Rates(**dict(settings.cost_rates))
    slots = settings.worker_group.slots if settings.worker_group is not None else 1
    per_run = spend.per_run_usd(rates, settings.budget_seconds, slots)
    return spend.SpendMeter(
        rates, settings.max_cost_usd, per_run, size=workers.known_size, store=jour, batch_dir=batch_dir
    )


def _release_workers(settings: Settings, batch_dir: Path, why: str) -> bool | None:
    """The worker group to 0 (:func:`remote_runner.placement.workers.release_workers`); None without one."""
    from remote_runner.placement import workers

    return workers.release_workers(settings, why, batch_dir=batch_dir)


def _power_off_head(why: str) -> None:
    log.info("power off: yes (%s)", why)
    result = importlib.import_module("remote_runner.cloud.shutdown").power_off()
    if not result.ok:
        log.error("power off failed: %s", result.tail(5))


def _remove_leftovers(docker: Any, batch_id: str) -> None:
    """Removes every container and network of the batch (only under the batch's lock, with no
    experiment running: at the start, and after an engine outage)."""
    containers, networks = docker.remove_labelled(f"llamaresttest.batch_id={batch_id}")
    if containers or networks:
        log.info("removed %d orphan containers and %d networks of this batch", len(containers), len(networks))


def _guarded(fn: Callable[[RunKey, Outcome, str], None]) -> Callable[[RunKey, Outcome, str], None]:
    def call(key: RunKey, outcome: Outcome, final: str) -> None:
        try:
            fn(key, outcome, final)
        except Exception:
            log.error("%s: after-run hooks failed\n%s", key.label, traceback.format_exc())

    return call


def _sync(batch_dir: Path, settings: Settings, *, in_progress: Sequence[Path] = ()) -> Any:
    """Syncs the batch folder; returns the upload module's result (False when the call failed).

    ``in_progress``: run folders of experiments still running; the upload module holds their
    growing files back for a later sync instead of sending them half-written."""
    upload = settings.upload
    if upload is None:
        return None

    def call() -> Any:
        uploader = importlib.import_module("remote_runner.cloud.upload")
        result = uploader.sync_batch(batch_dir, upload.bucket, upload.path, in_progress=list(in_progress))
        describe = getattr(result, "describe", None)
        log.info("upload: %s", describe() if callable(describe) else result)
        return result

    return _hook("upload.sync_batch", call)


def _upload_complete(result: Any) -> bool:
    if result is None or result is False:
        return False
    return bool(getattr(result, "complete", True))


#: a batch found finished at start (its VM was started again) holds its power-off this long: `pulumi
#: destroy` starts a stopped VM for its final upload and must reach it (and stop the runner) before
#: it powers off again (found by the rehearsal, docs/rehearsal.md). Costs a finished spot VM that its
#: schedule wakes every hour 3 of its minutes (docs/stacks.md).
RESTART_POWER_OFF_HOLD_SECONDS = 180.0


def _finish_batch(
    batch_dir: Path,
    settings: Settings,
    jour: journal.Journal,
    *,
    workers_released: bool | None = None,
    hold_seconds: float = 0.0,
    stop: threading.Event | None = None,
) -> None:
    """The batch summary, the report, the final upload, then the power-off when asked for and safe.
    ``workers_released``: False when a cluster's worker group did not read 0 (the head then stays up,
    watching nothing but still the one place that says so). ``hold_seconds``: wait this long before
    powering off, unless ``stop`` is set meanwhile (the runner is being stopped: no power-off)."""

    def summary() -> Any:
        return importlib.import_module("remote_runner.analysis.results").write_batch_summary(batch_dir)

    def report() -> Any:
        return importlib.import_module("remote_runner.analysis.report.document").build_report(
            batch_dir, out_dir=batch_dir
        )

    _hook("results.write_batch_summary", summary)
    _hook("report.build_report", report)
    pending_files = 0
    if settings.upload is not None:
        result = _sync(batch_dir, settings)
        if _upload_complete(result):
            jour.mark_uploaded(r.key for r in jour.runs())
        else:
            pending_files = max(
                1, len(getattr(result, "pending", []) or []) + len(getattr(result, "errors", []) or [])
            )
    if not settings.shutdown_when_done:
        return
    rows = jour.runs()

    def power_off() -> Any:
        shutdown = importlib.import_module("remote_runner.cloud.shutdown")
        decision = shutdown.should_power_off(
            shutdown_when_done=True,
            runs_total=len(rows),
            runs_finished=sum(r.status in journal.FINISHED for r in rows),
            upload_configured=settings.upload is not None,
            upload_pending=pending_files,
            workers_released=workers_released,
        )
        log.info("power off: %s (%s)", "yes" if decision.power_off else "no", decision.reason)
        if decision.power_off and hold_seconds > 0:
            log.info(
                "the batch was finished before this start: powering off in %.0f s unless the runner is "
                "stopped meanwhile (pulumi destroy's final upload, an operator)",
                hold_seconds,
            )
            if stop is not None and clock.wait(stop, hold_seconds):
                log.info("power off: no (the runner was stopped while it waited)")
                return None
        if decision.power_off:
            result = shutdown.power_off()
            if not result.ok:
                log.error("power off failed: %s", result.tail(5))

    _hook("shutdown", power_off)
