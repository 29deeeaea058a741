"""Results at paper scale (a script, not a test): one-hour runs shaped like real traffic, written the
way the recording proxy writes them, then summarised, clustered and reported, each beside a raw read.

A run: ``--sizes`` requests over one hour (60 % 4xx, 30 % 2xx, 10 % 5xx; JSON bodies of 0.2-5 KB;
Spring error bodies whose 2-10 KB stack traces come from 50 templates with varying ids, timestamps
and echoed input; a coverage sample every 5 s). Every request goes through
``infrastructure/traffic_addon.py``'s own hooks (``request`` then ``response``, one commit each, as
under mitmdump), driven by stand-in flow objects, so the database is byte for byte what an API
image writes (mitmproxy itself is not needed: a stand-in ``mitmproxy`` module is installed first).

Printed (times in CPU seconds of this process, the least of ``--repeat``: on a machine shared with
other jobs wall time says more about them than about the code):
- per size: bytes per request of ``traffic.sqlite`` (with its WAL), a raw read (``SELECT *`` of every
  row), ``write_run_summary`` and their ratio; the summary's growth exponent (slope of log time on
  log n); the time to write the run through the addon (wall, not compared with anything);
- per RESTgym cleaning/threshold case, on one run's 5xx bodies spread over its hour (and one row of
  trace bodies a second apart, beyond any run): ``faults.restgym_buckets`` time per body count,
  buckets, the candidates its index named per body, the exponent of the time on the body count, and
  on bodies + candidates (the goal is on the first; the second says whether the cost per unit of
  work stays);
- the report (``build_report``) on ``--report-runs`` synthesised one-hour summaries (20-60
  requests/s, a cumulative row per 100 requests, a coverage sample every 5 s), in a child process:
  wall and CPU time and peak RSS.

Goals (issue 24): bytes/request <= 0.6 KB; summary <= 10x the raw read at 200k; clustering exponent
<= 1.1 in every case; report at 660 runs <= 300 MB and <= 30 s.

    .venv/bin/python benchmarks/paper_benchmark.py            # a few minutes
    .venv/bin/python benchmarks/paper_benchmark.py --full     # sizes 10k-200k, 5k-20k bodies
    options: --sizes 10000,50000 --bodies 1000,2000 --report-runs 660 --skip traffic,faults,report
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from remote_runner.analysis import faults, results  # noqa: E402
from tests.results.recorder import Recorder, load_module  # noqa: E402

START = 1_764_000_000.0
HOUR = 3600.0
DEFAULT_SIZES = (10_000, 20_000, 40_000)
FULL_SIZES = (10_000, 50_000, 100_000, 200_000)
DEFAULT_BODIES = (1_000, 2_000, 4_000)
FULL_BODIES = (5_000, 10_000, 20_000)

# --- realistic traffic ----------------------------------------------------------------------------

FIRST = [
    "Alice",
    "Bob",
    "Carla",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kwame",
    "Lena",
]
LAST = ["Rossi", "Smith", "Nguyen", "Garcia", "Muller", "Kowalski", "Tanaka", "Okafor", "Silva", "Haddad"]
WORDS = [
    "project",
    "task",
    "release",
    "sprint",
    "backlog",
    "review",
    "deploy",
    "customer",
    "order",
    "invoice",
    "payment",
    "shipment",
    "account",
    "profile",
    "address",
    "street",
    "city",
    "country",
    "team",
    "member",
    "role",
    "admin",
    "report",
    "summary",
    "status",
    "pending",
    "active",
    "closed",
    "draft",
    "archived",
    "priority",
    "high",
    "low",
    "medium",
    "note",
    "comment",
    "label",
    "feature",
    "bug",
]
VERBS = ["find", "save", "update", "validate", "map", "load"]
STATUSES = ["ACTIVE", "PENDING", "CLOSED", "DRAFT", "ARCHIVED"]
RESOURCES = ["persons", "projects", "tasks", "orders", "customers", "invoices", "products", "teams"]
EXCEPTIONS = [
    "java.lang.NullPointerException",
    "java.lang.IllegalArgumentException",
    "java.lang.IllegalStateException",
    "java.lang.NumberFormatException",
    "java.util.NoSuchElementException",
    "org.springframework.dao.DataIntegrityViolationException",
    "org.springframework.dao.EmptyResultDataAccessException",
    "javax.persistence.EntityNotFoundException",
    "org.hibernate.exception.ConstraintViolationException",
    "com.fasterxml.jackson.databind.exc.InvalidFormatException",
]
SPRING_TAIL = [
    "org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:117)",
    "org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.invokeHandlerMethod(RequestMappingHandlerAdapter.java:895)",
    "org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.handleInternal(RequestMappingHandlerAdapter.java:808)",
    "org.springframework.web.servlet.mvc.method.AbstractHandlerMethodAdapter.handle(AbstractHandlerMethodAdapter.java:87)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1067)",
    "org.springframework.web.servlet.DispatcherServlet.doService(DispatcherServlet.java:963)",
    "org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1006)",
    "org.springframework.web.servlet.FrameworkServlet.doPost(FrameworkServlet.java:909)",
    "javax.servlet.http.HttpServlet.service(HttpServlet.java:681)",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)",
    "javax.servlet.http.HttpServlet.service(HttpServlet.java:764)",
    "org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:227)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:162)",
    "org.apache.tomcat.websocket.server.WsFilter.doFilter(WsFilter.java:53)",
    "org.springframework.web.filter.RequestContextFilter.doFilterInternal(RequestContextFilter.java:100)",
    "org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:117)",
    "org.springframework.web.filter.FormContentFilter.doFilterInternal(FormContentFilter.java:93)",
    "org.springframework.web.filter.CharacterEncodingFilter.doFilterInternal(CharacterEncodingFilter.java:201)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:197)",
    "org.apache.catalina.core.StandardContextValve.invoke(StandardContextValve.java:97)",
    "org.apache.catalina.authenticator.AuthenticatorBase.invoke(AuthenticatorBase.java:541)",
    "org.apache.catalina.core.StandardHostValve.invoke(StandardHostValve.java:135)",
    "org.apache.catalina.valves.ErrorReportValve.invoke(ErrorReportValve.java:92)",
    "org.apache.catalina.core.StandardEngineValve.invoke(StandardEngineValve.java:78)",
    "org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:360)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:399)",
    "org.apache.coyote.AbstractProcessorLight.process(AbstractProcessorLight.java:65)",
    "org.apache.coyote.AbstractProtocol$ConnectionHandler.process(AbstractProtocol.java:890)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1789)",
    "org.apache.tomcat.util.net.SocketProcessorBase.run(SocketProcessorBase.java:49)",
    "org.apache.tomcat.util.threads.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1191)",
    "org.apache.tomcat.util.threads.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:659)",
    "org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run(TaskThread.java:61)",
    "java.base/java.lang.Thread.run(Thread.java:833)",
]


def _ts(at: float) -> str:
    return (
        datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(at * 1000) % 1000:03d}+00:00"
    )


def _fuzz(rnd: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(3, 24)))


def entity(rnd: random.Random, resource_name: str, fuzzed: float = 0.0) -> dict[str, Any]:
    def text(n: int) -> str:
        return _fuzz(rnd) if rnd.random() < fuzzed else " ".join(rnd.choice(WORDS) for _ in range(n))

    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    return {
        "id": rnd.randint(1, 50_000),
        "name": text(3),
        "owner": {
            "firstName": first,
            "lastName": last,
            "email": f"{first.lower()}.{last.lower()}@example.com",
        },
        "status": rnd.choice(STATUSES),
        "priority": rnd.randint(1, 5),
        "createdAt": _ts(START - rnd.randint(0, 10**7)),
        "description": text(rnd.randint(4, 20)),
        "tags": [rnd.choice(WORDS) for _ in range(rnd.randint(0, 4))],
        "type": resource_name[:-1],
    }


def json_body(rnd: random.Random, resource_name: str, low: int, high: int, fuzzed: float = 0.0) -> bytes:
    """A JSON document of ``low``-``high`` bytes: one entity or a page of them."""
    target = rnd.randint(low, high)
    items = [entity(rnd, resource_name, fuzzed)]
    while len(json.dumps(items)) < target:
        items.append(entity(rnd, resource_name, fuzzed))
    doc: Any = items[0] if len(items) == 1 else {"content": items, "totalElements": len(items), "page": 0}
    return json.dumps(doc, separators=(",", ":")).encode()


class TraceTemplates:
    """50 failure templates: an exception, a message pattern and 2-10 KB of frames."""

    def __init__(self, seed: int = 50) -> None:
        rnd = random.Random(seed)  # noqa: S311  (seeded synthetic data, the same before and after)
        self.templates = []
        for i in range(50):
            res = rnd.choice(RESOURCES)
            cls = res[:-1].capitalize()
            app = [
                f"com.example.app.{pkg}.{cls}{kind}.{rnd.choice(VERBS)}"
                f"{rnd.choice(['ById', 'All', 'Entity', 'Dto', ''])}({cls}{kind}.java:{rnd.randint(20, 400)})"
                for pkg, kind in (
                    ("service", "Service"),
                    ("controller", "Controller"),
                    ("repository", "Repository"),
                )
                for _ in range(rnd.randint(1, 4))
            ]
            proxies = [
                f"jdk.internal.reflect.GeneratedMethodAccessor{rnd.randint(100, 999)}.invoke(Unknown Source)",
                "java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke("
                "DelegatingMethodAccessorImpl.java:43)",
                "java.base/java.lang.reflect.Method.invoke(Method.java:568)",
                "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke("
                "InvocableHandlerMethod.java:205)",
                "org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest("
                "InvocableHandlerMethod.java:150)",
            ]
            target = rnd.randint(2000, 10000)
            frames = app + proxies + SPRING_TAIL
            while sum(len(f) + 5 for f in frames) < target:
                frames = [*frames, rnd.choice(SPRING_TAIL)]
            while sum(len(f) + 5 for f in frames) > target and len(frames) > 8:
                frames = frames[:-1]
            exc = EXCEPTIONS[i % len(EXCEPTIONS)]
            msg = rnd.choice(
                [
                    f'Cannot invoke "com.example.app.model.{cls}.getId()" because "{res[:-1]}" is null',
                    f"{cls} with id {{id}} not found",
                    f"could not execute statement; SQL [n/a]; constraint [uk_{res}_name]; value '{{value}}'",
                    'For input string: "{value}"',
                    "Cannot deserialize value of type `java.lang.Integer` from String "
                    '"{value}": not a valid Integer value',
                    f"Illegal state of {cls} {{id}}: expected ACTIVE",
                ]
            )
            self.templates.append((res, exc, msg, frames))

    def body(self, rnd: random.Random, at: float, path: str) -> bytes:
        _, exc, msg, frames = rnd.choice(self.templates)
        message = msg.format(id=rnd.randint(1, 10**6), value=_fuzz(rnd))
        trace = f"{exc}: {message}\n\tat " + "\n\tat ".join(frames) + "\n"
        if rnd.random() < 0.3:
            trace += (
                f"Caused by: {rnd.choice(EXCEPTIONS)}: {_fuzz(rnd)}@{rnd.getrandbits(32):x}\n\t... 42 more\n"
            )
        doc = {
            "timestamp": _ts(at),
            "status": 500,
            "error": "Internal Server Error",
            "trace": trace,
            "message": message,
            "path": path,
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def error_4xx(rnd: random.Random, status: int, at: float, path: str) -> bytes:
    reason = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        415: "Unsupported Media Type",
        422: "Unprocessable Entity",
    }[status]
    doc: dict[str, Any] = {"timestamp": _ts(at), "status": status, "error": reason, "path": path}
    if status in (400, 422):
        doc["errors"] = [
            {
                "codes": [f"NotNull.{rnd.choice(WORDS)}.{field}", f"NotNull.{field}", "NotNull"],
                "defaultMessage": "must not be null",
                "objectName": rnd.choice(RESOURCES)[:-1],
                "field": field,
                "rejectedValue": _fuzz(rnd) if rnd.random() < 0.5 else None,
                "bindingFailure": False,
                "code": "NotNull",
            }
            for field in rnd.sample(
                [
                    "name",
                    "email",
                    "status",
                    "priority",
                    "owner",
                    "createdAt",
                    "description",
                    "tags",
                    "type",
                    "id",
                    "amount",
                    "date",
                ],
                rnd.randint(1, 12),
            )
        ]
        doc["message"] = (
            f"Validation failed for object='{rnd.choice(RESOURCES)[:-1]}'. Error count: {len(doc['errors'])}"
        )
    return json.dumps(doc, separators=(",", ":")).encode()


OPERATIONS = [(m, f"/api/{r}") for r in RESOURCES for m in ("GET", "POST")] + [
    (m, f"/api/{r}/{{id}}") for r in RESOURCES for m in ("GET", "PUT", "DELETE", "PATCH")
]


def spec_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, template in OPERATIONS:
        paths.setdefault(template, {})[method.lower()] = {"responses": {"200": {"description": "ok"}}}
    return {"openapi": "3.0.1", "info": {"title": "bench", "version": "1"}, "paths": paths}


def request_headers(rnd: random.Random, token: str, body: bytes) -> list[tuple[bytes, bytes]]:
    fields = [
        (b"Host", b"localhost:9090"),
        (b"User-Agent", b"python-requests/2.31.0"),
        (b"Accept-Encoding", b"gzip, deflate"),
        (b"Accept", b"application/json"),
        (b"Connection", b"keep-alive"),
        (b"Authorization", f"Bearer {token}".encode()),
    ]
    if body:
        fields += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
    return fields


def response_headers(at: float, body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"Vary", b"Origin"),
        (b"Vary", b"Access-Control-Request-Method"),
        (b"Vary", b"Access-Control-Request-Headers"),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"X-XSS-Protection", b"1; mode=block"),
        (b"Cache-Control", b"no-cache, no-store, max-age=0, must-revalidate"),
        (b"Pragma", b"no-cache"),
        (b"Expires", b"0"),
        (b"X-Frame-Options", b"DENY"),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode()),
        (b"Date", datetime.fromtimestamp(at, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT").encode()),
    ]


def write_run(run_dir: Path, n: int, seed: int, traces: TraceTemplates, addon: Any) -> None:
    """One hour of ``n`` requests through the addon's hooks, a coverage sample every 5 s, metadata."""
    rnd = random.Random(seed)  # noqa: S311  (seeded synthetic data, the same before and after)
    run_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(addon, run_dir / "traffic.sqlite")
    token = "".join(rnd.choice("abcdef0123456789") for _ in range(40))
    gap = HOUR / n
    for i in range(n):
        at = START + i * gap + rnd.random() * gap / 2
        method, template = rnd.choice(OPERATIONS)
        res = template.split("/")[2]
        path = template.replace("{id}", str(rnd.randint(1, 5000)))
        query = f"?page={rnd.randint(0, 9)}&size=20" if method == "GET" and rnd.random() < 0.2 else ""
        body = json_body(rnd, res, 20, 600, fuzzed=0.3) if method in ("POST", "PUT", "PATCH") else b""
        roll = rnd.random()
        if roll < 0.6:
            status = rnd.choice([400, 400, 404, 404, 401, 403, 405, 415, 422])
            answer = error_4xx(rnd, status, at, path)
        elif roll < 0.9:
            status = rnd.choice([200, 200, 200, 201, 204])
            answer = b"" if status == 204 else json_body(rnd, res, 200, 5000)
        else:
            status = 500
            answer = traces.body(rnd, at, path)
        took = rnd.uniform(0.002, 0.05)
        recorder.exchange(
            method,
            path + query,
            body,
            status,
            answer,
            at=at,
            duration=took,
            request_headers=request_headers(rnd, token, body),
            response_headers=response_headers(at + took, answer),
        )
    recorder.close()
    cov = run_dir / "coverage"
    cov.mkdir(exist_ok=True)
    lines = [
        "epoch,line_covered,line_missed,branch_covered,branch_missed,method_covered,method_missed,"
        "instruction_covered,instruction_missed"
    ]
    total_lines, total_branches, total_methods = 8000, 3000, 1500
    for k in range(int(HOUR / 5) + 1):
        frac = 0.2 + 0.4 * (1 - math.exp(-k / 150))
        lc, bc, mc = (
            int(total_lines * frac),
            int(total_branches * frac * 0.8),
            int(total_methods * frac * 1.1),
        )
        lines.append(
            f"{START + 5 * k:.3f},{lc},{total_lines - lc},{bc},{total_branches - bc},{mc},"
            f"{total_methods - mc},0,0"
        )
    (cov / "series.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (run_dir / "metadata.json").write_text(
        json.dumps(
            {
                "api": "bench-api",
                "tool": "bench-tool",
                "run": 1,
                "status": "succeeded",
                "start_utc": _ts(START - 1),
                "tool_start_utc": _ts(START - 0.5),
            }
        ),
        encoding="utf-8",
    )


def cpu_seconds(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """The least CPU time of ``repeat`` calls (this process's user + system time: what the machine's
    other jobs do not inflate as they do wall time), and the last call's result."""
    best, result = math.inf, None
    for _ in range(repeat):
        began = time.process_time()
        result = fn()
        best = min(best, time.process_time() - began)
    return best, result


def raw_read(db: Path) -> int:
    """Every row of ``requests``, every column, as stored: the floor a summary is compared with."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT * FROM requests").fetchall()
    conn.close()
    return len(rows)


def exponent(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) on log(n)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(max(t, 1e-9)) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def bench_traffic(root: Path, sizes: Sequence[int], repeat: int) -> None:
    addon = load_module("traffic_addon")
    traces = TraceTemplates()
    spec = root / "spec.json"
    spec.write_text(json.dumps(spec_document()), encoding="utf-8")
    print(
        f"{'requests':>9} {'write s':>8} {'KB/req':>7} {'raw read':>10} {'summary':>10} "
        f"{'summary/raw':>11} {'5xx':>6} {'ours':>5} {'restgym':>7}"
    )
    points = []
    for n in sizes:
        run_dir = root / "bench-api" / "bench-tool" / f"run-{n}"
        began = time.perf_counter()
        write_run(run_dir, n, seed=n, traces=traces, addon=addon)
        written = time.perf_counter() - began
        db = run_dir / "traffic.sqlite"
        size = db.stat().st_size + sum(p.stat().st_size for p in run_dir.glob("traffic.sqlite-*"))
        raw, count = cpu_seconds(lambda db=db: raw_read(db), repeat)
        took, summary = cpu_seconds(lambda rd=run_dir: results.write_run_summary(rd, spec, HOUR), repeat)
        points.append((n, took))
        fail = summary["failures"]
        print(
            f"{count:>9} {written:>8.1f} {size / count / 1024:>7.3f} {raw:>10.3f} {took:>10.2f} "
            f"{took / raw:>11.1f} {summary['requests']['status_5xx']:>6} {fail['unique']:>5} "
            f"{fail['restgym']['unique']:>7}"
        )
    if len(points) > 1:
        print(f"write_run_summary growth exponent: {exponent(points):.2f}")


# --- clustering -----------------------------------------------------------------------------------


def compact_body(rnd: random.Random, at: float) -> bytes:
    """A Spring error without trace: what makes RESTgym's `none` cleaning open a bucket per body."""
    path = f"/api/{rnd.choice(RESOURCES)}/{rnd.randint(1, 10**6)}"
    message = rnd.choice(
        ["No message available", f"Value '{_fuzz(rnd)}' is invalid", f"[{_fuzz(rnd)}] rejected"]
    )
    return json.dumps(
        {
            "timestamp": _ts(at),
            "status": 500,
            "error": "Internal Server Error",
            "message": message,
            "path": path,
        },
        separators=(",", ":"),
    ).encode()


def html_body(rnd: random.Random, at: float) -> bytes:
    return (
        f"<html><head><title>Error</title></head><body><h1>Whitelabel Error Page</h1><p>{_ts(at)}</p>"
        f"<div>There was an unexpected error (type=Internal Server Error, status=500).</div>"
        f"<div>{_fuzz(rnd)} {rnd.choice(EXCEPTIONS)} {rnd.randint(1, 10**6)}</div></body></html>"
    ).encode()


def languagetool_body(rnd: random.Random, at: float) -> bytes:
    return (
        f"Error: Internal Error: {rnd.choice(EXCEPTIONS)}: '{_fuzz(rnd)}' {rnd.choice(WORDS)} "
        f"{rnd.choice(WORDS)} {_fuzz(rnd)} at position {rnd.randint(1, 999)}\nmore lines"
    ).encode()


def clustering_cases() -> list[tuple[str, str, float, Callable[[random.Random, float], bytes]]]:
    traces = TraceTemplates()

    def trace(rnd: random.Random, at: float) -> bytes:
        return traces.body(rnd, at, f"/api/{rnd.choice(RESOURCES)}/{rnd.randint(1, 10**6)}")

    return [
        ("trace", "none", 0.9, trace),
        ("trace", "punctuation", 0.9, trace),
        ("trace", "none", 0.7, trace),
        ("compact", "none", 0.9, compact_body),
        ("compact", "none", 0.7, compact_body),
        ("compact", "json-message", 0.7, compact_body),
        ("compact", "json-message-market", 0.7, compact_body),
        ("html", "html-body", 0.8, html_body),
        ("languagetool", "languagetool", 0.8, languagetool_body),
    ]


def bench_faults(counts: Sequence[int], repeat: int) -> None:
    """Per case and body count: time, buckets and candidates the index named per body; the growth
    exponent of the time on the body count, and on bodies + candidates (the work the index leaves:
    a case whose candidates per body grow is not linear in the bodies, whatever the second says)."""
    print(
        f"{'bodies':<13} {'cleaning':<20} {'thr':>4} "
        + " ".join(f"{f'{n} s':>9} {'bkts':>6} {'cand/b':>6}" for n in counts)
        + f" {'exponent':>8} {'exp/work':>8}"
    )
    cases = [(*case, HOUR) for case in clustering_cases()]
    # beyond a run: the bodies a second apart, 5.5 h at 20k (the clustering is per run; a longer
    # span gives trace bodies more hour words, each making the bodies of one failure near misses)
    cases += [
        (f"{kind} 1/s", cleaning, threshold, make, 0.0)
        for kind, cleaning, threshold, make in clustering_cases()
        if (kind, cleaning) == ("trace", "punctuation")
    ]
    for kind, cleaning, threshold, make, span in cases:
        cells, points, work = [], [], []
        for n in counts:
            rnd = random.Random(n)  # noqa: S311  (seeded synthetic data, the same before and after)
            # one run's 5xx bodies over its hour (or a second apart), with milliseconds (Spring's
            # timestamps have them)
            gap = span / n if span else 1.0
            bodies = [make(rnd, START + i * gap + rnd.random() * gap) for i in range(n)]
            stats: dict[str, int] = {}
            took, found = cpu_seconds(
                functools.partial(faults.restgym_buckets, bodies, cleaning, threshold, stats), repeat
            )
            compared = stats.get("compared", 0)
            points.append((n, took))
            work.append((n + compared, took))
            cells.append(f"{took:>9.3f} {found.unique:>6} {compared / n:>6.2f}")
        print(
            f"{kind:<13} {cleaning:<20} {threshold:>4.1f} "
            + " ".join(cells)
            + f" {exponent(points):>8.2f} {exponent(work):>8.2f}"
        )


# --- the report at paper scale --------------------------------------------------------------------


def synthetic_summary(rnd: random.Random, api: str, tool: str, run: int, skill: float) -> dict[str, Any]:
    """A summary.json as write_run_summary writes it for a one-hour run (20-60 requests/s)."""
    n = int(HOUR * rnd.uniform(20, 60))
    rows = []
    c2 = c4 = c5 = c401 = c403 = 0
    ops = ops5 = ours = rg = 0
    samples = []
    for k in range(int(HOUR / 5) + 1):
        frac = skill * (0.3 + 0.5 * (1 - math.exp(-k / rnd.uniform(80, 200))))
        samples.append([round(5.0 * k + rnd.random() * 0.01, 3), frac, frac * 0.8, frac * 1.1])
    for i in range(100, n + 1, 100):
        c2 += rnd.randint(20, 40)
        c5 += rnd.randint(0, 20)
        c4 = i - c2 - c5
        c401 += rnd.randint(0, 3)
        c403 += rnd.randint(0, 2)
        ops = min(40, ops + (rnd.random() < 0.05))
        ops5 = min(20, ops5 + (rnd.random() < 0.03))
        ours += rnd.random() < 0.1
        rg += rnd.random() < 0.1
        seconds = round(i / n * HOUR, 3)
        s = samples[min(len(samples) - 1, int(seconds / 5))]
        rows.append(
            [
                i,
                seconds,
                c2,
                c4,
                c5,
                c401,
                c403,
                ops,
                ops5,
                ours,
                rg,
                s[1],
                s[2],
                s[3],
                round(abs(s[0] - seconds), 3),
                False,
            ]
        )
    last = rows[-1]
    final = samples[-1]
    checks = [
        {"name": "requests_per_minute", "passed": True, "measured": n / 60, "threshold": 130, "detail": ""},
        {"name": "request_span", "passed": True, "measured": 0.99, "threshold": 0.9, "detail": ""},
        {
            "name": "coverage_samples_per_minute",
            "passed": True,
            "measured": 12.0,
            "threshold": 12,
            "detail": "",
        },
        {"name": "traffic_db_integrity", "passed": True, "measured": "ok", "threshold": "ok", "detail": ""},
    ]
    return {
        "version": 1,
        "api": api,
        "tool": tool,
        "run": run,
        "status": "succeeded",
        "reason": "",
        "budget_seconds": HOUR,
        "spec": None,
        "tool_restarts": 0,
        "tool_crashes": [],
        "requests": {
            "requests": n,
            "status_2xx": last[2],
            "status_3xx": 0,
            "status_4xx": last[3],
            "status_5xx": last[4],
            "status_401": last[5],
            "status_403": last[6],
            "no_response": 0,
        },
        "operations": {
            "total": 40,
            "covered": last[7],
            "covered_list": [],
            "with_5xx": last[8],
            "with_5xx_list": [],
        },
        "failures": {
            "unique": last[9],
            "similarity_threshold": 0.8,
            "groups": [],
            "restgym": {"unique": last[10], "cleaning": "none", "similarity_threshold": 0.7, "buckets": []},
        },
        "cumulative": {
            "step": 100,
            "max_gap_seconds": 5.0,
            "columns": [
                "requests",
                "seconds",
                "status_2xx",
                "status_4xx",
                "status_5xx",
                "status_401",
                "status_403",
                "operations_covered",
                "operations_5xx",
                "unique_failures",
                "unique_failures_restgym",
                "line_coverage",
                "branch_coverage",
                "method_coverage",
                "coverage_gap",
                "gap_over_limit",
            ],
            "rows": rows,
            "rows_over_gap": 0,
        },
        "coverage": {
            "final": {
                "line": final[1],
                "branch": final[2],
                "method": final[3],
                "line_covered": 1,
                "line_total": 2,
                "branch_covered": 1,
                "branch_total": 2,
                "method_covered": 1,
                "method_total": 2,
            },
            "samples": len(samples),
            "series": samples,
            "series_columns": ["seconds", "line", "branch", "method"],
        },
        "first_2xx": {"seconds": 0.5, "requests": 2},
        "request_span_seconds": HOUR,
        "requests_before_tool_start": 3,
        "verification": {"verified": True, "thresholds": {}, "checks": checks},
        "tool_requests": None,
        "proxy_refused": 0,
        "problems": [],
    }


REPORT_CHILD = """
import re, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from remote_runner.analysis.report import document as report
began, cpu = time.perf_counter(), time.process_time()
report.build_report(Path(sys.argv[2]))
took, cpu = time.perf_counter() - began, time.process_time() - cpu
# VmHWM: this process's own peak (ru_maxrss would carry the parent's RSS across fork and exec)
status = Path("/proc/self/status").read_text()
print(took, cpu, re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
"""


def bench_report(root: Path, runs: int) -> None:
    batch = root / "batch-20260101T000000Z"
    apis = [f"api-{i:02d}" for i in range(11)]
    tools = [("llamaresttest", 0.9), ("arat-rl", 0.75), ("evomaster", 0.6)]
    reps = max(1, math.ceil(runs / (len(apis) * len(tools))))
    made = 0
    began = time.perf_counter()
    rnd = random.Random(660)  # noqa: S311  (seeded synthetic data, the same before and after)
    for rep in range(1, reps + 1):
        for api in apis:
            for tool, skill in tools:
                if made >= runs:
                    break
                run_dir = batch / api / tool / f"run-{rep}"
                run_dir.mkdir(parents=True)
                summary = synthetic_summary(rnd, api, tool, rep, skill)
                (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
                (run_dir / "metadata.json").write_text(json.dumps({"status": "succeeded"}), encoding="utf-8")
                made += 1
    size = sum(p.stat().st_size for p in batch.rglob("summary.json"))
    print(
        f"{made} synthesised one-hour summaries ({size / 1e6:.0f} MB) in {time.perf_counter() - began:.1f} s"
    )
    out = subprocess.run(
        [sys.executable, "-c", REPORT_CHILD, str(ROOT), str(batch)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    if out.returncode != 0:
        print(out.stderr)
        raise SystemExit("build_report failed")
    took, cpu, peak_kb = out.stdout.split()[-3:]
    print(
        f"build_report on {made} runs: {float(took):.1f} s wall, {float(cpu):.1f} s CPU, "
        f"peak RSS {int(peak_kb) / 1024:.0f} MB ({float(took) / made * 1000:.1f} ms per run)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--full", action="store_true", help="the issue's sizes: 10k-200k requests, 5k-20k bodies"
    )
    parser.add_argument("--sizes", help="requests per run, comma-separated")
    parser.add_argument("--bodies", help="5xx bodies per clustering case, comma-separated")
    parser.add_argument("--report-runs", type=int, default=660)
    parser.add_argument("--repeat", type=int, default=3, help="timings are the least CPU time of this many")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: traffic, faults, report")
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (FULL_SIZES if args.full else DEFAULT_SIZES)
    )
    bodies = (
        [int(s) for s in args.bodies.split(",")]
        if args.bodies
        else (FULL_BODIES if args.full else DEFAULT_BODIES)
    )
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="paper-bench-") as tmp:
        root = Path(tmp)
        if "traffic" not in skip:
            print("== traffic, summaries ==")
            bench_traffic(root, sizes, args.repeat)
        if "faults" not in skip:
            print("== RESTgym clustering ==")
            bench_faults(bodies, args.repeat)
        if "report" not in skip:
            print("== report ==")
            bench_report(root, args.report_runs)
    print(f"benchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
