"""Replaying a run's 5xx requests on a fresh service, to confirm them and key them by the server's trace.

``python -m remote_runner faults BATCH`` runs :func:`replay_batch`; the result of each run is
``<run>/faults.json`` (docs/results.md, "Confirmed faults"). The rules:

- **What is replayed**: every distinct 5xx request of the run (method, path, query and body; the
  runner's readiness probes left out), in the order of its first occurrence.
- **Where**: a container of the run's own API image, started as :mod:`remote_runner.experiment.lifecycle`
  starts the API container (same image, so the same databases and the same auth steps; same env,
  plus ``REPLAY``, the replay's number), on a network of its own, through docker_runtime; its
  ``/results`` is a scratch folder, never the run's. The request goes to the recording proxy on
  9090, as the tool's did. A request's recorded credential header is dropped when the image logs in
  by itself (``AUTH_STEPS``), so the proxy injects a fresh one.
- **How**: ``k`` times (default 3) alone, each on fresh state; when that is not a 5xx every time,
  ``k`` times preceded by the run's preceding requests of the same session (same ``Cookie`` and
  ``Authorization``) that could have made the state it needs: the write requests (POST, PUT, PATCH,
  DELETE) answered 2xx, at most :data:`PREFIX_BOUND` (20), the latest ones, in their order. GETs
  and failed writes are left out: in REST they should not change state, and the bound keeps a
  replay short. A request sent after a warm-up: replays start ``settle_seconds`` (5 s) after the
  container answers its readiness probe.
- **Verdict** (:func:`verdict`): **confirmed** when one way (alone, or with the prefix) gave a 5xx
  every time; **flaky** when some replays gave a 5xx; **not reproduced** when none did.
- **Key**: the API container's log between the request and its answer (docker's timestamps, plus
  :data:`LOG_SLACK` after the answer for the last lines to land) keyed by
  :mod:`remote_runner.analysis.fault_keys` against the classes under the image's ``COVERAGE_CLASSES``; a
  confirmed request whose replays logged no trace is keyed by RESTgym's bucket of its response body
  (``key_source`` says which).
- **Cost**: per run at most ``max_requests`` distinct requests and ``budget_seconds``; what is left
  is recorded as ``skipped`` with the reason. Requests are replayed in parallel, one container each,
  as many at a time as :func:`replay_slots` admits on the machine (remote_runner.placement.admission). One
  container serves every replay of a run when the run is **stateless enough**: none of its write
  requests was answered 2xx (nothing the tool did can have changed state), so a fresh container per
  replay would give the same answers; then replays are sent one after the other into it.
- **Resumable**: ``faults.json`` is rewritten (atomically) after every request; a run whose file
  says ``complete`` is skipped, a request already in it is not replayed again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote_runner.analysis import fault_keys, faults, results, traffic
from remote_runner.analysis.fault_report import FAULTS_FILE, FAULTS_VERSION, load_state
from remote_runner.common import clock
from remote_runner.experiment import lifecycle as experiment
from remote_runner.experiment.docker_runtime import (
    LABEL_PREFIX,
    ContainerSpec,
    Docker,
    DockerError,
    Mount,
    own_container_id,
)
from remote_runner.placement import admission

log = logging.getLogger("remote_runner.batch.replay")

K = 3
PREFIX_BOUND = 20
SETTLE_SECONDS = 5.0
LOG_SLACK = 0.5
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_HEADERS = ("cookie", "authorization")
#: hop-by-hop and length headers are the client's business, not the request's
_DROP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "te"})
CONFIRMED, FLAKY, NOT_REPRODUCED, SKIPPED = "confirmed", "flaky", "not reproduced", "skipped"
KEY_TRACE, KEY_BUCKET = "trace", "restgym bucket (no trace in the API log)"


@dataclass(frozen=True)
class Recorded:
    """One recorded request of the tool (probes left out); ``number`` is 1-based in arrival order."""

    number: int
    started: float
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int | None
    response_body: bytes = b""

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    @property
    def signature(self) -> str:
        digest = hashlib.sha256(self.body).hexdigest()[:16]
        return f"{self.method} {self.target} {digest}"

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name), "")

    @property
    def session(self) -> str:
        return "\n".join(self.header(h) for h in SESSION_HEADERS)


@dataclass(frozen=True)
class Config:
    k: int = K
    prefix_bound: int = PREFIX_BOUND
    settle_seconds: float = SETTLE_SECONDS
    #: per run: distinct requests replayed at most, and seconds spent at most (0: no limit)
    max_requests: int = 50
    budget_seconds: float = 1800.0
    cpus: float = 1.0
    memory_bytes: int = 1 << 30
    request_timeout: float = 30.0
    #: False: a fresh container per replay even for a stateless run
    share_stateless: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    key_frames: int = fault_keys.KEY_FRAMES


# --- pure parts ----------------------------------------------------------------------------------
def read_recorded(db_path: Path, tool_start: float | None) -> list[Recorded]:
    """The tool's requests of a run, decoded through :mod:`remote_runner.analysis.traffic`; rows before the
    tool's start (the readiness probes) left out."""
    out: list[Recorded] = []
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return out
    for row in traffic.read_all(db_path):
        started = float(row.get("started") or 0.0)
        if tool_start is not None and started < tool_start:
            continue
        wire = row.get("wire")
        path = results._wire_text(row.get("path"), wire) or "/"
        query = results._wire_text(row.get("query"), wire)
        if "?" in path:
            path, _, q2 = path.partition("?")
            query = query or q2
        try:
            headers = json.loads(row.get("request_headers") or "{}")
        except ValueError:
            headers = {}
        status = row.get("status")
        out.append(
            Recorded(
                number=len(out) + 1,
                started=started,
                method=results._wire_text(row.get("method"), wire) or "GET",
                path=path,
                query=query,
                headers=tuple((str(k), str(v)) for k, v in headers.items()),
                body=row.get("request_body") or b"",
                status=int(status) if status is not None else None,
                response_body=row.get("response_body") or b"",
            )
        )
    return out


def distinct_5xx(requests: Sequence[Recorded]) -> list[tuple[Recorded, int]]:
    """Each distinct 5xx request (by :attr:`Recorded.signature`) with how often it answered 5xx, in
    the order of its first 5xx."""
    first: dict[str, Recorded] = {}
    count: dict[str, int] = {}
    for r in requests:
        if r.status is not None and 500 <= r.status <= 599:
            first.setdefault(r.signature, r)
            count[r.signature] = count.get(r.signature, 0) + 1
    return [(first[s], count[s]) for s in first]


def prefix_for(requests: Sequence[Recorded], target: Recorded, bound: int = PREFIX_BOUND) -> list[Recorded]:
    """The requests replayed before ``target`` (module docstring): earlier writes of its session
    answered 2xx, the latest ``bound``, in their order."""
    before = [
        r
        for r in requests[: target.number - 1]
        if r.session == target.session
        and r.method.upper() in WRITE_METHODS
        and r.status is not None
        and 200 <= r.status <= 299
    ]
    return before[-bound:] if bound > 0 else []


def stateless_enough(requests: Sequence[Recorded]) -> bool:
    """True when no write request of the run was answered 2xx (see the module docstring)."""
    return not any(
        r.method.upper() in WRITE_METHODS and r.status is not None and 200 <= r.status <= 299
        for r in requests
    )


def replay_headers(req: Recorded, drop: Sequence[str] = ()) -> dict[str, str]:
    dropped = _DROP_HEADERS | {d.lower() for d in drop}
    return {k: v for k, v in req.headers if k.lower() not in dropped}


def is_5xx(status: int | None) -> bool:
    return status is not None and 500 <= status <= 599


def verdict(alone: Sequence[int | None], with_prefix: Sequence[int | None]) -> tuple[str, str | None]:
    """``(verdict, the way that confirmed it: "alone" | "with prefix" | None)``."""
    if alone and all(is_5xx(s) for s in alone):
        return CONFIRMED, "alone"
    if with_prefix and all(is_5xx(s) for s in with_prefix):
        return CONFIRMED, "with prefix"
    if any(is_5xx(s) for s in (*alone, *with_prefix)):
        return FLAKY, None
    return NOT_REPRODUCED, None


def replay_slots(
    machine: admission.Machine,
    measurement: admission.Measurement,
    cpus: float,
    memory_bytes: int,
    wanted: int,
) -> int:
    """How many replay containers may run at once: the first-fit admission of ``wanted`` one-container
    requests on an empty ledger of ``machine``, as far as the measured free CPUs and memory agree
    (at least 1, so a busy machine replays slowly instead of never)."""
    request = admission.Request(cpus, memory_bytes, containers=1)
    pending = [admission.Candidate(i, request) for i in range(max(1, wanted))]
    decision = admission.decide(
        admission.Ledger(machine), pending, measurement, admission.Policy(min_free_cpus=cpus)
    )
    return max(1, len(decision.admitted))


def excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


# --- one run's file ------------------------------------------------------------------------------
def _write(run_dir: Path, data: dict[str, Any]) -> None:
    path = run_dir / FAULTS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def group_faults(entries: Sequence[Mapping[str, Any]], analysis: faults.Analysis) -> list[dict[str, Any]]:
    """The run's unique confirmed faults: confirmed entries grouped by their trace key; those without
    a trace grouped by RESTgym's bucket of their recorded 5xx bodies (the API's cleaning and
    threshold). Each fault: key, key_source, the requests (signatures) in it, the first one."""
    confirmed = [e for e in entries if e.get("verdict") == CONFIRMED]
    by_key: dict[str, dict[str, Any]] = {}
    untraced = [e for e in confirmed if not e.get("key")]
    for e in confirmed:
        if e.get("key"):
            fault = by_key.setdefault(
                e["key"],
                {"key": e["key"], "key_source": KEY_TRACE, "own_frames": e.get("own_frames"), "requests": []},
            )
            fault["requests"].append(e["signature"])
    if untraced:
        bucketed = faults.restgym_buckets(
            [e.get("response_excerpt", "") for e in untraced],
            analysis.fault_cleaning,
            analysis.fault_similarity,
        )
        for e, bucket in zip(untraced, bucketed.assignment, strict=True):
            name = f"restgym-bucket-{bucket + 1}: {bucketed.buckets[bucket].example[:120]}"
            fault = by_key.setdefault(name, {"key": name, "key_source": KEY_BUCKET, "requests": []})
            fault["requests"].append(e["signature"])
    first_of = {e["signature"]: e for e in confirmed}
    out = []
    for fault in by_key.values():
        firsts = sorted((first_of[s] for s in fault["requests"]), key=lambda e: e["first"]["number"])
        fault["first"] = firsts[0]["first"]
        out.append(fault)
    return sorted(out, key=lambda f: f["first"]["number"])


# --- execution -----------------------------------------------------------------------------------
@dataclass
class RunContext:
    batch_dir: Path
    run_dir: Path
    api: str
    tool: str
    run: int
    image: str
    readiness_path: str
    readiness_timeout: float
    analysis: faults.Analysis
    tool_start: float | None
    auth_header: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Service:
    """One API container for replays: started, ready and settled; its address, its own classes."""

    def __init__(
        self,
        docker: Docker,
        ctx: RunContext,
        cfg: Config,
        network: str,
        name: str,
        replay_no: int,
        scratch: Path,
    ) -> None:
        self.docker, self.ctx, self.cfg, self.name = docker, ctx, cfg, name
        scratch.mkdir(parents=True, exist_ok=True)
        labels = {
            **dict(cfg.labels),
            f"{LABEL_PREFIX}.batch": ctx.batch_dir.name,
            f"{LABEL_PREFIX}.api": ctx.api,
            f"{LABEL_PREFIX}.tool": ctx.tool,
            f"{LABEL_PREFIX}.run": str(ctx.run),
            f"{LABEL_PREFIX}.role": "replay",
        }
        self.spec = ContainerSpec(
            name=name,
            image=ctx.image,
            network=network,
            aliases=(experiment.API_ALIAS,),
            labels=labels,
            env={
                "API": ctx.api,
                "TOOL": ctx.tool,
                "RUN": str(ctx.run),
                "TIME_BUDGET": "0",
                "COVERAGE_INTERVAL": "5",
                "REPLAY": str(replay_no),
            },
            mounts=(Mount(scratch.resolve(), "/results"),),
            cpus=cfg.cpus,
            memory_bytes=cfg.memory_bytes,
        )
        self.network = network
        self.ip: str | None = None

    def start(self) -> None:
        self.docker.run(self.spec)
        self.ip = self.docker.ip_address(self.name, self.network)
        if not self.ip:
            raise RuntimeError(f"no address for {self.name} on {self.network}")
        url = f"http://{self.ip}:{experiment.PROXY_PORT}{self.ctx.readiness_path}"
        deadline = clock.monotonic() + self.ctx.readiness_timeout
        while not experiment.probe_once(url):
            state = next(iter(self.docker.states([self.name])), None)
            if state is not None and not state.running:
                raise RuntimeError(f"{self.name} exited before it was ready (exit {state.exit_code})")
            if clock.monotonic() >= deadline:
                raise RuntimeError(f"{self.name} not ready after {self.ctx.readiness_timeout:g} s")
            clock.sleep(experiment.PROBE_INTERVAL)
        clock.sleep(self.cfg.settle_seconds)

    def own_classes(self) -> frozenset[str]:
        script = (
            'IFS=:; for p in $COVERAGE_CLASSES; do if [ -d "$p" ]; then (cd "$p" && find . -name "*.class"); '
            'elif [ -f "$p" ]; then unzip -Z1 "$p" 2>/dev/null | grep "\\.class$"; fi; done'
        )
        result = self.docker.exec(self.name, ["sh", "-c", script], timeout=120)
        return fault_keys.class_names(result.output) if result.ok else frozenset()

    def send(self, req: Recorded) -> tuple[int | None, float, float]:
        """Sends ``req`` to the proxy; ``(status or None, UTC sent, UTC answered)``."""
        assert self.ip is not None
        headers = replay_headers(req, [self.ctx.auth_header] if self.ctx.auth_header else [])
        sent = clock.now()
        conn = http.client.HTTPConnection(self.ip, experiment.PROXY_PORT, timeout=self.cfg.request_timeout)
        try:
            conn.request(req.method, req.target, body=req.body or None, headers=headers)
            response = conn.getresponse()
            response.read()
            status: int | None = response.status
        except (OSError, http.client.HTTPException):
            status = None
        finally:
            conn.close()
        return status, sent, clock.now()

    def log_between(self, since: float, until: float) -> str:
        clock.sleep(LOG_SLACK)
        try:
            return self.docker.logs_between(self.name, since, until + LOG_SLACK)
        except DockerError as exc:
            log.warning("no log of %s: %s", self.name, exc)
            return ""

    def remove(self) -> None:
        self.docker.remove([self.name])


def _base(ctx: RunContext) -> str:
    raw = f"lrt-replay-{ctx.batch_dir.name[-16:]}-{ctx.api}-{ctx.tool}-r{ctx.run}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


class RunReplayer:
    """Replays one run (module docstring); ``deadline`` is monotonic seconds."""

    def __init__(self, docker: Docker, ctx: RunContext, cfg: Config, slots: int, scratch: Path) -> None:
        self.docker, self.ctx, self.cfg, self.slots, self.scratch = docker, ctx, cfg, slots, scratch
        self.network = f"{_base(ctx)}-net"
        self.classes: frozenset[str] | None = None

    def _service(self, tag: str, replay_no: int) -> Service:
        name = f"{_base(self.ctx)}-{tag}"
        svc = Service(self.docker, self.ctx, self.cfg, self.network, name, replay_no, self.scratch / name)
        self.docker.remove([name])  # a leftover of an interrupted replay of the same run
        svc.start()
        if self.classes is None:
            self.classes = svc.own_classes()
        return svc

    def _attempt(self, svc: Service, prefix: Sequence[Recorded], req: Recorded) -> dict[str, Any]:
        for p in prefix:
            svc.send(p)
        status, sent, answered = svc.send(req)
        text = svc.log_between(sent, answered)
        key = fault_keys.key_from_log(text, self.classes or (), self.cfg.key_frames)
        return {
            "status": status,
            "seconds": round(answered - sent, 3),
            "key": key.key if key else None,
            "own_frames": key.own_frames if key else None,
        }

    def replay_request(
        self, requests: Sequence[Recorded], req: Recorded, occurrences: int, shared: Service | None
    ) -> dict[str, Any]:
        begin = clock.monotonic()
        modes: dict[str, list[dict[str, Any]]] = {"alone": [], "with prefix": []}
        prefix = prefix_for(requests, req, self.cfg.prefix_bound)
        plan: list[tuple[str, list[Recorded]]] = [("alone", [])]
        for mode, before in plan:
            for i in range(self.cfg.k):
                # the replay's number (REPLAY in the container): 1..k alone, k+1..2k with the prefix
                n = i + 1 + (self.cfg.k if mode == "with prefix" else 0)
                if shared is not None:
                    modes[mode].append(self._attempt(shared, before, req))
                    continue
                svc = self._service(f"q{req.number}-{n}", n)
                try:
                    modes[mode].append(self._attempt(svc, before, req))
                finally:
                    svc.remove()
            if mode == "alone" and prefix and not all(is_5xx(a["status"]) for a in modes["alone"]):
                plan.append(("with prefix", prefix))
        result, way = verdict(
            [a["status"] for a in modes["alone"]], [a["status"] for a in modes["with prefix"]]
        )
        keys = [a["key"] for a in (modes[way] if way else []) if a["key"]]
        entry = {
            "signature": req.signature,
            "occurrences": occurrences,
            "verdict": result,
            "confirmed_by": way,
            "first": {
                "number": req.number,
                "seconds": round(req.started - self.ctx.tool_start, 3) if self.ctx.tool_start else None,
                "method": req.method,
                "path": req.target,
                "body_excerpt": excerpt(req.body),
                "status": req.status,
            },
            "response_excerpt": excerpt(req.response_body, 2000),
            "prefix": [p.number for p in prefix],
            "replays": modes,
            "key": max(set(keys), key=keys.count) if keys else None,
            "own_frames": next((a["own_frames"] for a in modes[way or "alone"] if a["key"]), None),
            "replay_seconds": round(clock.monotonic() - begin, 3),
        }
        return entry

    def run(self) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.cfg
        state = load_state(ctx.run_dir)
        if state.get("complete"):
            return state
        begin = clock.monotonic()
        spent_before = float(state.get("replay_seconds") or 0.0)
        requests = read_recorded(ctx.run_dir / "traffic.sqlite", ctx.tool_start)
        distinct = distinct_5xx(requests)
        done: dict[str, dict[str, Any]] = {e["signature"]: e for e in state.get("requests", [])}
        shared_mode = cfg.share_stateless and stateless_enough(requests)
        data: dict[str, Any] = {
            "version": FAULTS_VERSION,
            "api": ctx.api,
            "tool": ctx.tool,
            "run": ctx.run,
            "complete": False,
            "config": {k: v for k, v in asdict(cfg).items() if k != "labels"},
            "distinct_5xx": len(distinct),
            "container": "shared (stateless enough: no write request answered 2xx)"
            if shared_mode
            else "fresh per replay",
            "requests": list(done.values()),
        }
        todo = [(r, c) for r, c in distinct if r.signature not in done]
        over = max(0, len(distinct) - cfg.max_requests)
        skipped = {r.signature for r, _ in distinct[cfg.max_requests :]} if over else set()
        deadline = begin + max(0.0, cfg.budget_seconds - spent_before) if cfg.budget_seconds > 0 else None

        def record(entry: dict[str, Any]) -> None:
            with ctx.lock:
                data["requests"] = [e for e in data["requests"] if e["signature"] != entry["signature"]]
                data["requests"].append(entry)
                data["replay_seconds"] = round(spent_before + clock.monotonic() - begin, 3)
                _write(ctx.run_dir, data)

        def skip(req: Recorded, why: str) -> None:
            record(
                {
                    "signature": req.signature,
                    "verdict": SKIPPED,
                    "reason": why,
                    "first": {
                        "number": req.number,
                        "method": req.method,
                        "path": req.target,
                        "body_excerpt": excerpt(req.body),
                        "status": req.status,
                        "seconds": round(req.started - ctx.tool_start, 3) if ctx.tool_start else None,
                    },
                }
            )

        def one(req: Recorded, occurrences: int, shared: Service | None) -> None:
            if req.signature in skipped:
                skip(req, f"over the per-run count budget ({cfg.max_requests} requests)")
                return
            if deadline is not None and clock.monotonic() >= deadline:
                skip(req, f"over the per-run time budget ({cfg.budget_seconds:g} s)")
                return
            try:
                record(self.replay_request(requests, req, occurrences, shared))
            except (DockerError, RuntimeError) as exc:
                log.error("%s/%s/run-%d: replaying #%d: %s", ctx.api, ctx.tool, ctx.run, req.number, exc)
                record({**_error_entry(req, ctx), "reason": str(exc)[:500]})

        if todo:
            self.docker.create_network(self.network, {**dict(cfg.labels), f"{LABEL_PREFIX}.role": "replay"})
            own = own_container_id()
            if own:
                self.docker.connect(self.network, own)
            try:
                if shared_mode:
                    shared = self._service("shared", 1)
                    try:
                        for req, c in todo:
                            one(req, c, shared)
                    finally:
                        shared.remove()
                else:
                    with ThreadPoolExecutor(max_workers=self.slots) as pool:
                        list(pool.map(lambda rc: one(rc[0], rc[1], None), todo))
            finally:
                if own:
                    self.docker.disconnect(self.network, own)
                self.docker.remove_network(self.network)
        entries = data["requests"]
        order = {r.signature: r.number for r, _ in distinct}
        entries.sort(key=lambda e: order.get(e["signature"], 0))
        grouped = group_faults(entries, ctx.analysis)
        counts = {
            v: sum(1 for e in entries if e["verdict"] == v)
            for v in (CONFIRMED, FLAKY, NOT_REPRODUCED, SKIPPED)
        }
        counts["error"] = sum(1 for e in entries if e["verdict"] == "error")
        data.update(
            {
                "complete": counts["error"] == 0,
                "verdicts": counts,
                "faults": grouped,
                "unique_confirmed": len(grouped),
                "unique_confirmed_by_trace": sum(1 for f in grouped if f["key_source"] == KEY_TRACE),
                "replay_seconds": round(spent_before + clock.monotonic() - begin, 3),
            }
        )
        _write(ctx.run_dir, data)
        return data


def _error_entry(req: Recorded, ctx: RunContext) -> dict[str, Any]:
    return {
        "signature": req.signature,
        "verdict": "error",
        "first": {
            "number": req.number,
            "method": req.method,
            "path": req.target,
            "status": req.status,
            "body_excerpt": excerpt(req.body),
            "seconds": round(req.started - ctx.tool_start, 3) if ctx.tool_start else None,
        },
    }


def auth_header_of(image_info: Mapping[str, Any] | None) -> str | None:
    """The header the image's auth addon injects (``AUTH_STEPS``' ``header``), None without one."""
    env = ((image_info or {}).get("Config") or {}).get("Env") or []
    for item in env:
        name, _, value = str(item).partition("=")
        if name == "AUTH_STEPS" and value:
            try:
                return str(json.loads(value).get("header") or "") or None
            except (ValueError, AttributeError):
                return None
    return None


def replay_batch(
    batch_dir: Path,
    catalog: Any,
    docker: Docker,
    cfg: Config,
    slots: int,
    scratch: Path,
    say: Callable[[str], None] = lambda m: None,
) -> list[dict[str, Any]]:
    """Replays every succeeded run of ``batch_dir`` whose API is in ``catalog``; the runs' faults.json."""
    out = []
    for run_dir in results.find_run_dirs(batch_dir):
        api, tool, n = results.run_identity(run_dir)
        meta = results.read_json(run_dir / "metadata.json")
        if str(meta.get("status")) != experiment.SUCCEEDED or n is None:
            continue
        entry = catalog.apis.get(api)
        if entry is None:
            say(f"{api}/{tool}/run-{n}: API {api} not in the catalog: not replayed")
            continue
        image = (meta.get("images") or {}).get("api") or entry.image
        ctx = RunContext(
            batch_dir=batch_dir,
            run_dir=run_dir,
            api=api,
            tool=tool,
            run=n,
            image=image,
            readiness_path=entry.readiness_path,
            readiness_timeout=entry.readiness_timeout,
            analysis=entry.analysis,
            tool_start=results.tool_start(meta),
            auth_header=auth_header_of(docker.image_info(image)),
        )
        data = RunReplayer(docker, ctx, cfg, slots, scratch).run()
        say(
            f"{api}/{tool}/run-{n}: {data.get('distinct_5xx', 0)} distinct 5xx requests, "
            f"verdicts {data.get('verdicts')}, {data.get('unique_confirmed')} unique confirmed faults, "
            f"{data.get('replay_seconds')} s"
        )
        out.append(data)
    return out
