"""Cluster mode: the batch's runs placed on the nodes of a Ray cluster (``run --ray ADDRESS``).

Who does what (docs/cluster.md):

- The driver (this process, on the head) keeps the plan and the journal, single writer. It submits one
  Ray task per attempt, in plan order, asking the run's CPUs and memory as Ray resources plus one
  ``experiment_slot`` (each node offers as many as its size allows), and never more tasks than the
  alive nodes can hold at once (:func:`capacity`), so Ray's queue never holds a run the driver could
  still reorder. A run that fits no node is refused before anything starts (:func:`fit_problem`):
  Ray itself would keep such a task waiting forever without an error.
- On its node the task (:func:`run_attempt`) removes containers left by dead nodes and by earlier
  drivers of the batch (labels ``llamaresttest.node`` and ``llamaresttest.driver`` on every
  container and network), pulls the images from the registry when the node lacks them, takes a cpuset
  from the node's own ledger (:mod:`remote_runner.placement.node_ledger`), runs today's experiment lifecycle
  (:func:`remote_runner.experiment.lifecycle.run`) on the node's Docker engine into a node-local folder,
  uploads it to ``.../<run>/attempt-K/`` when an upload is configured, and returns it to the driver (a tar
  archive through Ray's object store).
- Exactly once: the driver unpacks a returned folder into the batch folder and commits the attempt
  in one journal transaction (:meth:`remote_runner.batch.journal.Journal.commit_attempt`). A task whose node
  died ends with Ray's ``NodeDiedError`` (or a worker crash): the run goes back to pending without a
  failed attempt (:data:`remote_runner.placement.local.LOST`). An attempt the driver gave up on never reaches
  the batch folder: only the driver's own current task results are unpacked, and the journal commits
  only a run's current attempt.

Ray's own retries are off (``max_retries=0``): the journal, not Ray, decides what runs again.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import tarfile
import threading
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from remote_runner.common import clock
from remote_runner.experiment.docker_runtime import LABEL_PREFIX, Docker, DockerError
from remote_runner.experiment.images import registry_image
from remote_runner.experiment.lifecycle import FAILED, INTERRUPTED, SUCCEEDED, ExperimentSpec, Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement.admission import Candidate, Decision, Request, Reservation
from remote_runner.placement.local import LOST

log = logging.getLogger("remote_runner.placement.cluster")

SLOT = "experiment_slot"
NODE_LABEL = f"{LABEL_PREFIX}.node"
DRIVER_LABEL = f"{LABEL_PREFIX}.driver"
#: where a node keeps the attempt folders it is writing and its cpuset ledger
SCRATCH_ENV = "LLAMARESTTEST_NODE_SCRATCH"
DEFAULT_SCRATCH = "/var/lib/llamaresttest/node"
#: the conventional variables that point the Google clients elsewhere (remote_runner/cloud/mig.py)
ENDPOINT_VARIABLES = ("STORAGE_EMULATOR_HOST", "GCE_METADATA_HOST", "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE")
#: how often the driver refreshes its view of the nodes (and cluster.json)
REFRESH_SECONDS = 2.0
#: seconds a stopped attempt gets to stop its containers and hand its folder back
STOP_WAIT_SECONDS = 60.0


# --- the cluster's nodes (pure) -----------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    node_id: str
    alive: bool
    address: str
    cpus: float
    memory_bytes: int
    slots: int

    def holds(self, request: Request) -> int:
        """How many attempts of ``request`` this node can run at once."""
        if not self.alive or self.slots < 1:
            return 0
        by_cpu = math.floor(self.cpus / request.total_cpus + 1e-9) if request.total_cpus > 0 else self.slots
        by_memory = (
            math.floor(self.memory_bytes / request.total_memory) if request.total_memory else self.slots
        )
        return max(0, min(self.slots, by_cpu, by_memory))


def nodes_from(ray_nodes: Sequence[Mapping[str, Any]]) -> list[Node]:
    """``ray.nodes()`` as :class:`Node` rows (a node without ``experiment_slot`` runs no experiment,
    like the head on Google Cloud)."""
    out = []
    for n in ray_nodes:
        resources = n.get("Resources") or {}
        out.append(
            Node(
                node_id=str(n.get("NodeID", "")),
                alive=bool(n.get("Alive")),
                address=str(n.get("NodeManagerAddress", "")),
                cpus=float(resources.get("CPU", 0.0)),
                memory_bytes=int(resources.get("memory", 0)),
                slots=int(resources.get(SLOT, 0)),
            )
        )
    return out


def capacity(nodes: Sequence[Node], request: Request) -> int:
    """Attempts of ``request`` the alive nodes can run at once."""
    return sum(n.holds(request) for n in nodes)


def fit_problem(nodes: Sequence[Node], request: Request) -> str | None:
    """None when at least one alive node can run one attempt of ``request``; else the message that
    says what the largest node offers and what to change."""
    alive = [n for n in nodes if n.alive]
    if any(n.holds(request) for n in alive):
        return None
    with_slots = [n for n in alive if n.slots > 0]
    need = (
        f"an experiment needs {request.total_cpus:g} CPUs and {request.total_memory / 1024**3:.2f} GiB "
        f"(2 containers x --cpus-per-container {request.cpus:g} / --memory-per-container) and one "
        f"'{SLOT}'"
    )
    if not with_slots:
        return (
            f"{need}, but no alive node of the cluster offers '{SLOT}' (start the workers with "
            f"`ray start --resources '{{\"{SLOT}\": N}}'`, see docs/cluster.md)"
        )
    biggest = max(with_slots, key=lambda n: (n.cpus, n.memory_bytes))
    return (
        f"{need}, but no node of the cluster fits it (largest: {biggest.cpus:g} CPUs, "
        f"{biggest.memory_bytes / 1024**3:.2f} GiB of Ray memory): lower --cpus-per-container or "
        "--memory-per-container, or add a larger node"
    )


def lost_reason(exc: BaseException) -> str | None:
    """The reason to re-queue an attempt whose task ended with ``exc`` without counting it, when
    ``exc`` says the node or the task's worker went away (not the experiment's doing); else None."""
    import ray.exceptions as rex

    lost_types = tuple(
        t
        for t in (
            getattr(rex, "NodeDiedError", None),
            getattr(rex, "WorkerCrashedError", None),
            getattr(rex, "LocalRayletDiedError", None),
            getattr(rex, "ObjectLostError", None),
            getattr(rex, "OwnerDiedError", None),
            getattr(rex, "TaskUnschedulableError", None),
            getattr(rex, "RaySystemError", None),
        )
        if isinstance(t, type)
    )
    if isinstance(exc, lost_types):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(" This can happen")[0].split(" To see node death")[0]  # Ray's advice
        return f"node lost ({type(exc).__name__}): {first}"
    return None


# --- archives -----------------------------------------------------------------------------------
def pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def unpack(archive: bytes, folder: Path) -> None:
    """Unpacks ``archive`` into ``folder`` (created), refusing members that leave it or are links."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:  # tarfile's own "data" filter is missing from Debian 12's Python 3.11.2
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                raise ValueError(f"refusing archive member {member.name!r} (a link, a device or outside)")
            member.mode &= 0o755 if member.isdir() else 0o644
        tar.extractall(folder, members=members)  # noqa: S202  (every member checked above)


# --- the node's side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptPayload:
    """Everything a node needs for one attempt (pickled by Ray): the attempt's experiment as the
    driver built it (the same :func:`remote_runner.batch.driver.experiment_spec` as on one machine;
    its paths are the driver's, the node puts its own in their place) and the spec files' bytes, so
    nodes need no shared file system."""

    spec: ExperimentSpec
    driver: str
    spec_bytes: bytes
    tool_spec_bytes: bytes
    registry: str | None = None
    upload_bucket: str | None = None
    upload_path: str = ""
    scratch: str = DEFAULT_SCRATCH
    #: (bucket, path) the node fetches the models from before a run of a tool that needs them
    models: tuple[str, str] | None = None
    #: the node summarises the run itself (summary.json, cumulative.csv) with these verification
    #: settings; False: the driver does (an old driver)
    summarise: bool = True
    max_tool_restarts: int | None = None
    #: the node's experiment function: None is today's lifecycle; the benchmark puts a synthetic one
    #: here (it must be importable on the nodes), which needs no image
    experiment: Callable[..., Outcome] | None = None


def ensure_image(docker: Docker, image: str, registry: str | None) -> str | None:
    """Makes ``image`` present on this node's engine: pulled from ``registry`` (and tagged with its
    plain name) when the node does not have it. Returns a problem line, or None."""
    if docker.image_id(image) is not None:
        return None
    if not registry:
        return f"image {image} is not on node and no registry is set (--registry) to pull it from"
    remote = registry_image(registry, image)
    try:
        docker.pull(remote)
        docker.tag(remote, image)
    except DockerError as exc:
        return f"pulling {remote} failed: {exc.result.tail(3)}"
    return None


def remove_orphans(docker: Docker, batch_id: str, driver: str, alive_nodes: set[str]) -> list[str]:
    """Removes this batch's containers and networks on this engine that a dead node or an earlier
    driver left: their ``llamaresttest.node`` is no alive node, or their ``llamaresttest.driver`` is
    not the current driver (the driver's tasks die with it). Returns what was removed."""
    label = f"{LABEL_PREFIX}.batch_id={batch_id}"
    removed: list[str] = []
    for kind in ("container", "network"):
        for ident, node, drv in docker.labelled_with(kind, label, (NODE_LABEL, DRIVER_LABEL)):
            if (node and node not in alive_nodes) or (drv and drv != driver):
                if kind == "container":
                    docker.remove([ident])
                else:
                    docker.remove_network(ident)
                removed.append(f"{kind} {ident}")
    return removed


def _node_machine() -> Any:
    import psutil

    from remote_runner.placement.admission import Machine

    ids = tuple(sorted(os.sched_getaffinity(0)))
    return Machine(len(ids), psutil.virtual_memory().total, ids)


def run_attempt_here(payload: AttemptPayload, node_id: str, alive: set[str], stop: threading.Event) -> dict:
    """One attempt on this node (the body of the Ray task; callable without Ray for tests). Returns
    ``{"status", "reason", "metadata", "node", "archive", "removed"}``."""
    from remote_runner.experiment import lifecycle as experiment
    from remote_runner.placement.admission import cpuset_arg
    from remote_runner.placement.node_ledger import NodeLedger

    planned = payload.spec
    docker = Docker()
    scratch = Path(payload.scratch) / f"node-{node_id[:16]}"
    stage = scratch / "attempts" / planned.batch / planned.key.rel_dir / f"attempt-{planned.attempt}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    removed = remove_orphans(docker, planned.batch_id, payload.driver, alive)
    if removed:
        log.warning("node %s: removed %d leftovers of dead nodes or drivers", node_id[:8], len(removed))
    problems = (
        []
        if payload.experiment is not None  # a synthetic experiment (benchmark) starts no container
        else [
            p
            for p in (
                ensure_image(docker, planned.api.image, payload.registry),
                ensure_image(docker, planned.tool.image, payload.registry),
            )
            if p
        ]
    )
    if not problems and payload.models is not None and planned.tool.needs_models:
        from remote_runner.experiment import models

        problems = models.ensure(models.Source(*payload.models), planned.models_dir)
    if problems:
        return _result(FAILED, "; ".join(problems), {}, node_id, stage, removed)
    # the batch's spec copies, each format in its own folder as in the batch (names may be equal)
    spec_dir = scratch / "specs" / planned.batch / planned.key.api
    spec_file = _write(spec_dir / "api" / planned.spec_file.name, payload.spec_bytes)
    tool_spec = _write(
        spec_dir / planned.tool.spec_format / (planned.tool_spec_file or planned.spec_file).name,
        payload.tool_spec_bytes,
    )
    request = Request(planned.cpus, planned.memory_bytes)
    ledger = NodeLedger(scratch, _node_machine())
    token = f"{planned.batch_id[:8]}-{planned.key.label}-a{planned.attempt}"
    reservation = ledger.reserve(token, request)
    try:
        sets = [cpuset_arg(s) if s else None for s in reservation.cpusets]
        spec = replace(
            planned,
            run_dir=stage,
            spec_file=spec_file,
            tool_spec_file=tool_spec,
            api_cpuset=sets[0],
            tool_cpuset=sets[1],
            extra_labels=(*planned.extra_labels, (NODE_LABEL, node_id), (DRIVER_LABEL, payload.driver)),
        )
        run = payload.experiment or experiment.run
        outcome = run(spec, docker, stop)
    finally:
        ledger.release(token)
    metadata = dict(outcome.metadata)
    metadata["node"] = node_id
    meta_file = stage / "metadata.json"
    if meta_file.is_file():
        try:
            data = json.loads(meta_file.read_text(encoding="utf-8"))
            data["node"] = node_id
            meta_file.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        except (OSError, json.JSONDecodeError):
            pass
    if payload.summarise and payload.experiment is None:
        # where the run ran, in a process of its own: the driver gets the summary, never the work
        from remote_runner.analysis import summaries

        try:
            summaries.in_child(
                stage, spec_file, planned.budget_seconds, planned.api.analysis, payload.max_tool_restarts
            )
        except Exception as exc:  # the driver summarises what it receives instead
            log.warning("node %s: summarising %s failed: %s", node_id[:8], planned.key.label, exc)
    uploaded = False
    if payload.upload_bucket:
        from remote_runner.cloud import upload

        parts = (payload.upload_path.strip("/"), planned.batch, str(planned.key.rel_dir))
        prefix = "/".join(p for p in parts if p)
        result = upload.sync_batch(stage, payload.upload_bucket, prefix)
        uploaded = bool(result.complete)
        metadata["attempt_upload"] = {"prefix": f"{prefix}/{stage.name}", "complete": uploaded}
    # the traffic database stays in the bucket once it is there (it is most of a run's bytes); the
    # driver's folder then holds the summary, the coverage series, the cumulative rows and the logs
    keep_traffic = not (uploaded and (stage / "summary.json").is_file())
    return _result(
        outcome.status, outcome.reason, metadata, node_id, stage, removed, keep_traffic=keep_traffic
    )


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


#: what a node keeps out of the folder it hands back once the bucket has it (and its summary is made)
LEFT_IN_BUCKET = ("traffic.sqlite", "traffic.sqlite-wal", "traffic.sqlite-shm")


def _result(
    status: str,
    reason: str | None,
    metadata: dict,
    node_id: str,
    stage: Path,
    removed: list[str],
    *,
    keep_traffic: bool = True,
) -> dict:
    if not keep_traffic:
        for name in LEFT_IN_BUCKET:
            (stage / name).unlink(missing_ok=True)
        metadata["traffic_in_bucket_only"] = True
        meta_file = stage / "metadata.json"
        try:  # the run folder says where its traffic is
            data = json.loads(meta_file.read_text(encoding="utf-8"))
            data["traffic_in_bucket_only"] = True
            data["attempt_upload"] = metadata.get("attempt_upload")
            meta_file.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        except (OSError, json.JSONDecodeError):
            pass
    archive = pack(stage) if stage.is_dir() else b""
    shutil.rmtree(stage, ignore_errors=True)
    return {
        "status": status,
        "reason": reason,
        "metadata": metadata,
        "node": node_id,
        "archive": archive,
        "removed": removed,
    }


def run_attempt(payload: AttemptPayload) -> Iterator[dict]:  # a Ray generator task
    """The Ray task: first yields ``{"node": id}`` (so the driver's journal knows where the attempt
    runs before it ends), then the result of :func:`run_attempt_here`. ``ray.cancel`` (the driver was
    told to stop) arrives as KeyboardInterrupt: the experiment is stopped as on one machine, and its
    folder still comes back, marked interrupted."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    yield {"node": node_id}
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    stop = threading.Event()
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = run_attempt_here(payload, node_id, alive, stop)
        except BaseException as exc:
            box["error"] = f"runner error on node {node_id[:8]}: {exc}\n{traceback.format_exc()}"

    worker = threading.Thread(target=body, name=f"attempt-{payload.spec.key.label}", daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            worker.join(0.5)
        except KeyboardInterrupt:
            stop.set()
    if "error" in box:
        raise RuntimeError(box["error"])
    result = box["result"]
    if stop.is_set() and result["status"] != SUCCEEDED:
        result["status"] = INTERRUPTED
        result["reason"] = result.get("reason") or "driver stopped"
    yield result


def clean_here(batch_ids: Sequence[str]) -> dict:
    """Removes every container and network of the given batches on this node's engine (the body of
    :func:`clean_node`; callable without Ray)."""
    docker = Docker()
    removed: list[str] = []
    for batch_id in batch_ids:
        containers, networks = docker.remove_labelled(f"{LABEL_PREFIX}.batch_id={batch_id}")
        removed += [f"container {c}" for c in containers] + [f"network {n}" for n in networks]
    return {"removed": removed}


def clean_node(batch_ids: Sequence[str]) -> dict:  # a Ray task pinned to one node
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), **clean_here(batch_ids)}


def node_instance() -> dict:  # a Ray task pinned to one node
    import ray

    from remote_runner.placement.workers import instance_name

    return {"node": ray.get_runtime_context().get_node_id(), "instance": instance_name()}


def on_each_node(
    fn: Callable[..., dict], node_ids: Sequence[str], *args: Any, timeout: float, what: str
) -> dict[str, dict]:
    """Runs ``fn(*args)`` once on each of ``node_ids`` as a Ray task pinned to it (Ray's
    NodeAffinitySchedulingStrategy, soft=False), asking no resources, and waits up to ``timeout``.
    Returns node id -> its answer; a node that died meanwhile or did not answer in time is logged
    (``what`` names the work) and left out, and a late task is cancelled."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(fn)
    refs = {
        remote.options(
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(*args): node
        for node in node_ids
    }
    if not refs:
        return {}
    done, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    out: dict[str, dict] = {}
    for ref in done:
        try:
            out[refs[ref]] = ray.get(ref)
        except Exception as exc:  # a node that died meanwhile (a spot VM's containers go with it)
            log.warning("node %s: %s failed: %s", refs[ref][:8], what, lost_reason(exc) or exc)
    for ref in late:
        log.warning("node %s did not finish %s within %.0f s", refs[ref][:8], what, timeout)
        ray.cancel(ref, force=True)
    return out


def instance_names(node_ids: Sequence[str], *, timeout: float = 60.0) -> dict[str, str]:
    """Node id -> the instance it runs on, asked of each node by a task pinned to it."""
    answers = on_each_node(node_instance, node_ids, timeout=timeout, what="saying its instance")
    return {node: str(answer["instance"]) for node, answer in answers.items()}


def clean_nodes(batch_ids: Sequence[str], *, timeout: float = 120.0) -> dict[str, list[str]]:
    """At the end of a batch every alive node with an experiment slot removes the batch's containers
    and networks: an attempt whose raylet died while its engine and machine lived on (a raylet crash,
    an existing cluster's node) leaves API containers that have no deadline of their own. Returns
    node id -> what it removed."""
    import ray

    nodes = [n.node_id for n in nodes_from(ray.nodes()) if n.alive and n.slots > 0]
    answers = on_each_node(clean_node, nodes, list(batch_ids), timeout=timeout, what="cleaning up")
    out = {node: list(answer.get("removed") or []) for node, answer in answers.items()}
    for node, removed in out.items():
        if removed:
            log.info("node %s removed %d leftovers of the batch", node[:8], len(removed))
    return out


# --- the driver's side ----------------------------------------------------------------------------
def connect(address: str, *, runtime_env: Mapping[str, Any] | None = None) -> Any:
    """Connects this process to the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``) as the
    batch's driver; returns Ray's context (its ``dashboard_url``)."""
    import ray

    global _CONTEXT
    if ray.is_initialized() and _CONTEXT is not None:
        return _CONTEXT
    env = dict(runtime_env or {})
    # Google endpoints pointed elsewhere on the driver (a stand-in, a rehearsal) are pointed there on
    # the nodes too; on Google Cloud none is set and the nodes use Google's
    forwarded = {k: os.environ[k] for k in ENDPOINT_VARIABLES if os.environ.get(k)}
    if forwarded:
        env["env_vars"] = {**forwarded, **dict(env.get("env_vars") or {})}
    if "py_modules" not in env and os.environ.get("LLAMARESTTEST_RAY_SHIP_CODE", "1") != "0":
        import remote_runner

        # the runner's own code travels with the job (Ray's runtime environment): the workers need
        # only the runner's dependencies, never a copy pushed by the operator
        env["py_modules"] = [str(Path(remote_runner.__file__).parent)]
    _CONTEXT = ray.init(
        address=address,
        runtime_env=env or None,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    return _CONTEXT


_CONTEXT: Any = None


def dashboard_url(context: Any) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


class RayPlacement:
    """Placement on a Ray cluster (:class:`remote_runner.placement.local.Placement`)."""

    def __init__(
        self,
        request: Request,
        payload_for: Callable[[RunKey, int], AttemptPayload],
        *,
        run_dir_for: Callable[[RunKey], Path],
        stop: threading.Event,
        on_placed: Callable[[RunKey, int, str], None] | None = None,
        status_file: Path | None = None,
        dashboard: str | None = None,
        nodes: Callable[[], list[Node]] | None = None,
    ) -> None:
        import ray

        self._ray = ray
        self.request = request
        self.payload_for = payload_for
        self.run_dir_for = run_dir_for
        self.stop = stop
        self.on_placed = on_placed
        self.status_file = status_file
        self.dashboard = dashboard
        self._nodes_fn = nodes or (lambda: nodes_from(ray.nodes()))
        self._nodes: list[Node] = []
        self._nodes_at = -1e9
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self.outstanding: set[Hashable] = set()  # runs whose attempt is submitted
        self.where: dict[Hashable, str] = {}  # run -> node id, once its task said so
        self._instances: dict[str, str] = {}  # node id -> instance name (scale-in)
        self.task = ray.remote(run_attempt).options(
            num_cpus=request.total_cpus,
            memory=request.total_memory,
            resources={SLOT: 1},
            max_retries=0,
            num_returns="streaming",
        )

    # nodes and the status file ------------------------------------------------------------------
    def nodes(self, *, fresh: bool = False) -> list[Node]:
        now = clock.monotonic()
        if fresh or now - self._nodes_at >= REFRESH_SECONDS:
            self._nodes = self._nodes_fn()
            self._nodes_at = now
            self.write_status()
        return self._nodes

    def write_status(self) -> None:
        if self.status_file is None:
            return
        with self._lock:
            where = {str(getattr(k, "label", k)): n for k, n in self.where.items()}
            running = len(self.outstanding)
        doc = {
            "updated": clock.utc_iso(),
            "dashboard": self.dashboard,
            "running": running,
            "nodes": [
                {
                    **asdict(n),
                    "holds": n.holds(self.request),
                    "slots_used": sum(1 for v in where.values() if v == n.node_id),
                    "runs": sorted(k for k, v in where.items() if v == n.node_id),
                }
                for n in self._nodes
            ],
        }
        # the scheduler's loop and the attempts' threads all write it: one at a time, and a failed
        # write (a full disk) only costs status its freshness, never the batch
        with self._status_lock:
            tmp = self.status_file.with_name(f".{self.status_file.name}.tmp")
            try:
                tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
                tmp.replace(self.status_file)
            except OSError as exc:
                log.warning("cannot write %s: %s", self.status_file, exc)

    # the interface ------------------------------------------------------------------------------
    def decide(self, pending: Sequence[Candidate]) -> Decision:
        from remote_runner.placement.admission import Ledger, Machine

        nodes = self.nodes()
        with self._lock:
            free = capacity(nodes, self.request) - len(self.outstanding)
        admitted = tuple(
            Reservation(c.run, c.request, tuple(() for _ in range(c.request.containers)))
            for c in pending[: max(0, free)]
        )
        held = None
        if len(pending) > len(admitted):
            alive = sum(1 for n in nodes if n.alive and n.slots > 0)
            held = (
                f"cluster full ({len(self.outstanding)} running on {alive} alive nodes)"
                if alive
                else "no alive node with an experiment slot: waiting for nodes to join"
            )
        return Decision(admitted, Ledger(Machine(0, 0)), held)

    def admit(self, reservation: Reservation) -> None:
        with self._lock:
            self.outstanding.add(reservation.run)

    def release(self, run: Hashable) -> None:
        with self._lock:
            self.outstanding.discard(run)
            self.where.pop(run, None)
        self.write_status()

    @property
    def reserved_cpus(self) -> float:
        with self._lock:
            return len(self.outstanding) * self.request.total_cpus

    def busy_instances(self) -> set[str] | None:
        """The instances of the nodes that run an attempt now; None while an admitted attempt has not
        said where it runs (its node could look idle)."""
        with self._lock:
            if len(self.where) < len(self.outstanding):
                return None
            nodes = set(self.where.values())
        unknown = [n for n in nodes if n not in self._instances]
        if unknown:
            self._instances.update(instance_names(unknown))
        if any(n not in self._instances for n in nodes):
            return None
        return {self._instances[n] for n in nodes}

    def start(self, key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
        ray = self._ray
        gen = self.task.remote(self.payload_for(key, attempt))
        stopped_at: float | None = None
        items: list[dict] = []
        try:
            while True:
                if self.stop.is_set() and stopped_at is None:
                    stopped_at = clock.monotonic()
                    ray.cancel(gen)
                if stopped_at is not None and clock.monotonic() - stopped_at > STOP_WAIT_SECONDS:
                    return Outcome(INTERRUPTED, "driver stopped; the attempt did not hand its folder back")
                ready, _ = ray.wait([gen], timeout=0.5)
                if not ready:
                    continue
                try:
                    ref = next(gen)  # type: ignore[call-overload]
                except StopIteration:
                    break
                item = ray.get(ref)
                items.append(item)
                if "status" not in item and "node" in item:
                    with self._lock:
                        self.where[key] = item["node"]
                    if self.on_placed is not None:
                        self.on_placed(key, attempt, item["node"])
                    self.write_status()
        except Exception as exc:
            reason = lost_reason(exc)
            if reason is not None:
                node = self.where.get(key, "?")
                log.warning("%s attempt %d: %s (node %s)", key.label, attempt, reason, node[:8])
                return Outcome(LOST, reason)
            if stopped_at is not None:
                return Outcome(INTERRUPTED, f"driver stopped ({type(exc).__name__})")
            text = str(exc).strip().splitlines()
            return Outcome(FAILED, f"runner error on the node: {text[-1] if text else type(exc).__name__}")
        result = next((i for i in reversed(items) if "status" in i), None)
        if result is None:
            return Outcome(INTERRUPTED, "the attempt ended without a result")
        if result.get("archive"):
            unpack(result["archive"], self.run_dir_for(key))
        for what in result.get("removed") or ():
            log.info("node %s removed leftover %s", str(result.get("node", "?"))[:8], what)
        return Outcome(result["status"], result.get("reason"), dict(result.get("metadata") or {}))
