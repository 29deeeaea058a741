"""Per-run ``summary.json`` and per-batch ``summary.csv``: the file side of the metrics.

Reads what the API container and the runner wrote into a run folder (docs/contracts.md):
``traffic.sqlite``, ``coverage/series.csv``, ``metadata.json``; computes the metrics
(:mod:`remote_runner.analysis.metrics`) and the verification (:mod:`remote_runner.analysis.verification`);
writes ``summary.json`` atomically. A run that produced nothing (failed before the tool started, empty or
missing database, no coverage) still gets a summary: zero counts, ``null`` coverage, failed checks.

The runner calls :func:`write_run_summary` after each experiment and :func:`write_batch_summary` at
the end of a batch. Neither raises for a damaged run folder: problems are recorded in the summary.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from remote_runner.analysis import cumulative, fault_counts, faults, metrics, tool_log, traffic, verification
from remote_runner.analysis.metrics import CoverageSample, Request
from remote_runner.analysis.verification import Thresholds

SUMMARY_VERSION = 1
RUN_DIR = re.compile(r"^run-(\d+)$")

SUMMARY_COLUMNS = (
    "api",
    "tool",
    "run",
    "status",
    "verified",
    "reason",
    "failed_checks",
    "requests",
    "status_2xx",
    "status_4xx",
    "status_5xx",
    "status_401",
    "status_403",
    "no_response",
    "operations_total",
    "operations_covered",
    "operations_5xx",
    "unique_failures",
    "unique_failures_restgym",
    "operations_500_arat_rl",
    "unique_failures_llamaresttest",
    "line_coverage",
    "branch_coverage",
    "method_coverage",
    "line_coverage_time_area",
    "branch_coverage_time_area",
    "method_coverage_time_area",
    "line_coverage_10min",
    "branch_coverage_10min",
    "line_coverage_30min",
    "branch_coverage_30min",
    "line_coverage_60min",
    "branch_coverage_60min",
    "seconds_to_first_2xx",
    "requests_to_first_2xx",
    "requests_per_minute",
    "request_span_fraction",
    "coverage_samples_per_minute",
    "tool_restarts",
    "run_dir",
)


# --- reading the run folder -----------------------------------------------------------------------


def _wire_text(value: object, wire: object) -> str:
    """A text column of ``requests`` as text. Rows of the current addon (``wire = 'latin-1'``) hold
    the wire bytes one code point per byte: re-encoded and read as UTF-8 (undecodable bytes become
    U+FFFD). Older rows (no ``wire``) hold the text as mitmproxy decoded it; a BLOB is read as UTF-8."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    text = str(value)
    if wire == "latin-1" and not text.isascii():  # ASCII reads the same either way
        try:
            return text.encode("latin-1").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text
    return text


def read_refused(db_path: Path) -> int | None:
    """How many requests the recording proxy refused because it could not record them (table
    ``refused``, docs/contracts.md); None when the database or the table is absent (older images)."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return None
    try:
        conn = traffic.connect(db_path)
    except sqlite3.Error:
        return None
    try:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refused'")
        if found.fetchone() is None:
            return None
        return int(conn.execute("SELECT count(*) FROM refused").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def read_requests(db_path: Path) -> tuple[list[Request], str | None]:
    """The ``requests`` table in arrival order, and a problem description (``None`` if all is well).

    A missing or empty file or a missing table is an empty run, not an error. Response bodies are
    read for 5xx responses only (the one metric that needs them)."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return [], None if not db_path.exists() else "traffic database is empty"
    try:
        conn = traffic.connect(db_path)
    except sqlite3.Error as exc:
        return [], f"cannot open traffic database: {exc}"
    try:
        cols = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        if not cols:
            return [], "traffic database has no requests table"
        # schema 1 (no packing column) and 2 alike (remote_runner/analysis/traffic.py)
        wanted = ["started", "finished", "method", "path", "query", "status", "wire", "packing"]
        select = ", ".join(c if c in cols else "NULL" for c in wanted)
        # only 5xx bodies are used (unique failures): an hour of traffic can hold gigabytes of bodies
        if {"status", "response_body"} <= cols:
            select += ", CASE WHEN status BETWEEN 500 AND 599 THEN response_body END"
        else:
            select += ", NULL"
        order = "id" if "id" in cols else "rowid"
        unpacker = traffic.Unpacker(conn)
        rows = conn.execute(f"SELECT {select} FROM requests ORDER BY {order}").fetchall()
    except sqlite3.Error as exc:
        return [], f"cannot read traffic database: {exc}"
    finally:
        conn.close()
    out: list[Request] = []
    damaged = 0
    for started, finished, method, path, query, status, wire, packing, stored in rows:
        raw_path = _wire_text(path, wire) or "/"
        q = _wire_text(query, wire)
        if "?" in raw_path:
            raw_path, _, q2 = raw_path.partition("?")
            q = q or q2
        try:
            body = unpacker.body(stored, packing)
        except traffic.UnpackError:
            damaged += 1
            body = None
        out.append(
            Request(
                started=float(started or 0.0),
                finished=float(finished) if finished is not None else None,
                method=(_wire_text(method, wire) or "GET").upper(),
                path=raw_path,
                query=q,
                status=int(status) if status is not None else None,
                response_body=body or b"",
            )
        )
    return out, (f"{damaged} response bodies could not be unpacked (read as empty)" if damaged else None)


_SERIES_FIELDS = (
    "line_covered",
    "line_missed",
    "branch_covered",
    "branch_missed",
    "method_covered",
    "method_missed",
)


def read_coverage(csv_path: Path) -> tuple[list[CoverageSample], str | None]:
    """Rows of ``coverage/series.csv``; malformed rows (a torn last line) are skipped and reported."""
    if not csv_path.is_file():
        return [], None
    samples: list[CoverageSample] = []
    bad = 0
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            try:
                samples.append(
                    CoverageSample(float(row["epoch"]), *(int(float(row[f])) for f in _SERIES_FIELDS))
                )
            except (KeyError, TypeError, ValueError):
                bad += 1
    return samples, (f"{bad} malformed coverage rows skipped" if bad else None)


def read_tool_log(path: Path) -> tuple[tool_log.ToolReport, str | None]:
    """What the tool reported in its log (:mod:`remote_runner.analysis.tool_log`), and a problem (None if
    all is well; a missing log is no problem: the tool may never have started)."""
    if not path.is_file():
        return tool_log.ToolReport(), None
    try:
        report = tool_log.parse_text(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        return tool_log.ToolReport(), f"cannot read tool log: {exc}"
    bad = len(report.unreadable)
    return report, (f"{bad} unreadable marker lines in the tool log" if bad else None)


def load_spec(spec_path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The OpenAPI/Swagger document (JSON or YAML), or ``None`` and why."""
    if spec_path is None:
        return None, "no spec given"
    try:
        text = Path(spec_path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, f"cannot read spec: {exc}"
    try:
        doc: Any = json.loads(text)
    except ValueError:
        try:
            import yaml  # PyYAML: only needed for YAML specs

            doc = yaml.safe_load(text)
        except Exception as exc:  # any parse error means: no usable spec
            return None, f"cannot parse spec: {exc}"
    if not isinstance(doc, dict):
        return None, "spec is not a mapping"
    return doc, None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
        if dt.tzinfo is None:  # contract: all times are UTC
            from datetime import UTC

            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


# the runner's metadata.json: "tool_start_utc" (the budget's start), "start_utc" (the attempt's start)
_START_KEYS = ("tool_start_utc", "tool_started", "tool_start", "start_utc", "started", "start", "started_at")
_REASON_KEYS = ("reason", "failure_reason", "error", "failure", "message")


def tool_start(metadata: Mapping[str, Any]) -> float | None:
    """When the tool container started (the runner's ``tool_start_utc``), as UTC epoch seconds."""
    return _epoch(metadata.get("tool_start_utc"))


def run_start(metadata: Mapping[str, Any]) -> float | None:
    """When the run's budget started (the tool's start if recorded), as UTC epoch seconds."""
    for key in _START_KEYS:
        value = _epoch(metadata.get(key))
        if value is not None:
            return value
    return None


def metadata_reason(metadata: Mapping[str, Any]) -> str:
    for key in _REASON_KEYS:
        value = metadata.get(key)
        if value:
            return str(value)
    return ""


# --- the summary ----------------------------------------------------------------------------------


def summarise(
    *,
    requests: Sequence[Request],
    samples: Sequence[CoverageSample],
    spec: Mapping[str, Any] | None,
    budget_seconds: float,
    start: float | None,
    integrity: verification.Check,
    thresholds: Thresholds = verification.DEFAULT_THRESHOLDS,
    failure_similarity: float = metrics.DEFAULT_FAILURE_SIMILARITY,
    not_before: float | None = None,
    analysis: faults.Analysis | None = None,
    tool_report: tool_log.ToolReport | None = None,
) -> dict[str, Any]:
    """The metrics and verification block of a run, from plain data (no files).

    Requests that arrived before ``not_before`` (the tool's start) are not the tool's: they are the
    runner's readiness probes through the same proxy. They are left out and counted apart. When the
    runner's metadata shows an attempt whose tool never started, every request is a probe.

    ``analysis`` (the API's ``[analysis]`` settings; generic defaults when ``None``) chooses the
    cleaning and threshold of RESTgym's fault count (:mod:`remote_runner.analysis.faults`)."""
    analysis = analysis or faults.Analysis()
    before = 0
    if not_before is not None:
        kept = [r for r in requests if r.started >= not_before]
        before = len(requests) - len(kept)
        requests = kept
    matcher = metrics.operation_matcher(spec)
    counts = metrics.status_counts(requests)
    # each request matched once (2xx and 5xx only: the metrics that need an operation); the same
    # sets as metrics.operations_covered / operations_with_5xx, and ours groups as
    # metrics.unique_failures (tests/results/test_faults.py checks both), without matching again
    is_2xx = [r.status is not None and 200 <= r.status < 300 for r in requests]
    is_5xx = [r.status is not None and 500 <= r.status < 600 for r in requests]
    ops = [
        matcher.match(r.method, r.path) if good or bad else None
        for r, good, bad in zip(requests, is_2xx, is_5xx, strict=True)
    ]
    covered = tuple(sorted({op for op, good in zip(ops, is_2xx, strict=True) if good and op is not None}))
    with_5xx = tuple(sorted({op for op, bad in zip(ops, is_5xx, strict=True) if bad and op is not None}))
    failures, new_failure = faults.our_failures(requests, ops, failure_similarity)
    restgym = faults.restgym_buckets(
        (r.response_body for r, bad in zip(requests, is_5xx, strict=True) if bad),
        analysis.fault_cleaning,
        analysis.fault_similarity,
    )
    with_500 = fault_counts.operations_with_500(requests, ops)
    llama_faults = fault_counts.llamaresttest_faults(requests, spec)
    assignment = iter(restgym.assignment)
    bucket_of = [next(assignment) if bad else None for bad in is_5xx]
    t0 = start
    if t0 is None and requests:
        t0 = min(r.started for r in requests)
    if t0 is None and samples:
        t0 = min(s.epoch for s in samples)
    final = metrics.final_coverage(samples)
    series = metrics.coverage_series(samples, t0)
    first = metrics.first_2xx(requests, t0)
    span = metrics.request_span(requests)
    rows = cumulative.series(requests, ops, new_failure, bucket_of, samples, t0 or 0.0, budget=budget_seconds)
    verified, checks = verification.verify(
        requests=counts.requests,
        span_seconds=span,
        coverage_samples=len(samples),
        budget_seconds=budget_seconds,
        integrity=integrity,
        thresholds=thresholds,
        restarts=len(tool_report.restarts) if tool_report else 0,
        restart_reasons=tuple(r.reason for r in tool_report.restarts) if tool_report else (),
    )
    return {
        # the tool's restarts (crash, then started again by its entrypoint) and why, from its log
        "tool_restarts": len(tool_report.restarts) if tool_report else 0,
        "tool_crashes": [r.as_dict() for r in tool_report.restarts] if tool_report else [],
        "requests": asdict(counts),
        "operations": {
            "total": len(matcher.operations) if spec is not None else None,
            "covered": len(covered),
            "covered_list": [str(op) for op in covered],
            "with_5xx": len(with_5xx),
            "with_5xx_list": [str(op) for op in with_5xx],
        },
        "failures": {
            "unique": len(failures),
            "similarity_threshold": failure_similarity,
            "groups": [asdict(f) for f in failures],
            "restgym": {
                "unique": restgym.unique,
                "cleaning": analysis.fault_cleaning,
                "similarity_threshold": analysis.fault_similarity,
                "buckets": [asdict(b) for b in restgym.buckets],
            },
            # the other papers' counts, each labelled with its source (remote_runner/analysis/fault_counts.py)
            "arat_rl": {"operations_with_500": len(with_500), "operations": with_500},
            "llamaresttest": {"unique": llama_faults.unique, "by_prefix": llama_faults.by_prefix},
        },
        "cumulative": {
            "step": cumulative.STEP,
            "max_gap_seconds": cumulative.MAX_GAP_SECONDS,
            "columns": list(cumulative.COLUMNS),
            "rows": [list(row) for row in rows],
            "rows_over_gap": sum(1 for row in rows if row[-1]),
        },
        "coverage": {
            "final": asdict(final) if final is not None else None,
            "samples": len(samples),
            "series": [[round(p.seconds, 3), p.line, p.branch, p.method] for p in series],
            "series_columns": ["seconds", "line", "branch", "method"],
            # time-based figures, each from the last sample at or before its moment (cumulative.py)
            "time_area": cumulative.time_area(samples, t0 or 0.0, budget_seconds),
            "at_minutes": {
                str(m): cumulative.coverage_at(samples, t0 or 0.0, 60.0 * m, budget_seconds)
                for m in cumulative.MINUTES
            },
        },
        "first_2xx": asdict(first) if first is not None else None,
        "request_span_seconds": round(span, 3),
        "requests_before_tool_start": before,
        "verification": {
            "verified": verified,
            "thresholds": asdict(thresholds),
            "checks": [c.as_dict() for c in checks],
        },
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_identity(run_dir: Path) -> tuple[str, str, int | None]:
    """(api, tool, n) from ``.../<api>/<tool>/run-<n>``."""
    m = RUN_DIR.match(run_dir.name)
    return run_dir.parent.parent.name, run_dir.parent.name, int(m.group(1)) if m else None


def _tool_requests(report: tool_log.ToolReport) -> dict[str, int] | None:
    """The tool's own final request count (``TOOL_REQUESTS``), or None when it reports none."""
    if report.requests is None:
        return None
    return {"sent": report.requests.sent, "answered": report.requests.answered}


def write_run_summary(
    run_dir: Path,
    spec_path: Path | None,
    budget_seconds: float,
    *,
    thresholds: Thresholds | None = None,
    failure_similarity: float = metrics.DEFAULT_FAILURE_SIMILARITY,
    analysis: faults.Analysis | None = None,
    max_tool_restarts: int | None = None,
) -> dict[str, Any]:
    """Compute and write ``run_dir/summary.json`` and ``run_dir/cumulative.csv``; returns the summary.

    ``analysis`` is the API's ``[analysis]`` settings (``catalog.Api.analysis``); without it,
    RESTgym's values for a benchmark API of that name (:func:`faults.default_analysis`), else the
    generic defaults. ``thresholds`` default to the analysis's for this (API, tool), with
    ``max_tool_restarts`` (the batch's setting) when given.

    Never fails on missing or damaged inputs (the problems are listed under ``problems``); only an
    unwritable run folder raises."""
    run_dir = Path(run_dir)
    metadata = read_json(run_dir / "metadata.json")
    requests, traffic_problem = read_requests(run_dir / "traffic.sqlite")
    samples, coverage_problem = read_coverage(run_dir / "coverage" / "series.csv")
    spec, spec_problem = load_spec(spec_path)
    integrity = verification.database_integrity(run_dir / "traffic.sqlite")
    tool_report, log_problem = read_tool_log(run_dir / "logs" / "tool.log")
    api, tool, n = run_identity(run_dir)
    api_name = str(metadata.get("api") or api)
    tool_name = str(metadata.get("tool") or tool)
    analysis = analysis or faults.default_analysis(api_name)
    if thresholds is None:
        base = None if max_tool_restarts is None else Thresholds(max_tool_restarts=max_tool_restarts)
        thresholds = analysis.thresholds_for(tool_name, base)
    tool_began = tool_start(metadata)
    if tool_began is None and "start_utc" in metadata:
        tool_began = math.inf  # the runner started this attempt but never its tool
    body = summarise(
        requests=requests,
        samples=samples,
        spec=spec,
        budget_seconds=budget_seconds,
        start=run_start(metadata),
        not_before=tool_began,
        integrity=integrity,
        thresholds=thresholds,
        failure_similarity=failure_similarity,
        analysis=analysis,
        tool_report=tool_report,
    )
    tool_requests = _tool_requests(tool_report)
    proxy_refused = read_refused(run_dir / "traffic.sqlite")
    refused_problem = (
        f"the recording proxy refused {proxy_refused} request(s) it could not record"
        " (answered 502; table refused of traffic.sqlite says why)"
        if proxy_refused
        else None
    )
    if tool_requests is not None:
        check = verification.recorded_requests(body["requests"]["requests"], tool_requests["sent"])
        body["verification"]["checks"].append(check.as_dict())
        body["verification"]["verified"] = bool(body["verification"]["verified"] and check.passed)
    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "api": api_name,
        "tool": tool_name,
        "run": metadata.get("run", n),
        "status": str(metadata.get("status") or "unknown"),
        "reason": metadata_reason(metadata),
        "budget_seconds": budget_seconds,
        "spec": str(spec_path) if spec_path is not None else None,
        **body,
        "tool_requests": tool_requests,
        # every tool has a request count: its own (TOOL_REQUESTS) where it prints one, else the
        # recording proxy's rows (LlamaRestTest and EvoMaster print none), saying which
        "request_count": (
            {"count": tool_requests["sent"], "source": "tool (TOOL_REQUESTS)"}
            if tool_requests is not None
            else {"count": body["requests"]["requests"], "source": "recording proxy (the tool prints none)"}
        ),
        "proxy_refused": proxy_refused,
        "problems": [
            p for p in (traffic_problem, refused_problem, coverage_problem, spec_problem, log_problem) if p
        ],
    }
    _atomic_write(run_dir / "cumulative.csv", cumulative_csv(body["cumulative"]["rows"]))
    _atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return summary


def cumulative_csv(rows: Sequence[Sequence[Any]]) -> str:
    """The cumulative series as CSV (header :data:`cumulative.COLUMNS`; empty cells for no value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cumulative.COLUMNS)
    writer.writerows([_fmt(v) for v in row] for row in rows)
    return buf.getvalue()


# --- the batch ------------------------------------------------------------------------------------


def find_run_dirs(batch_dir: Path) -> list[Path]:
    """``<api>/<tool>/run-<n>`` folders, sorted by api, tool, n (earlier attempts are not runs)."""
    found = []
    for api_dir in sorted(p for p in Path(batch_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for tool_dir in sorted(p for p in api_dir.iterdir() if p.is_dir()):
            for run_dir in tool_dir.iterdir():
                m = RUN_DIR.match(run_dir.name)
                if m and run_dir.is_dir():
                    found.append((api_dir.name, tool_dir.name, int(m.group(1)), run_dir))
    return [r for *_, r in sorted(found, key=lambda t: t[:3])]


def journal_reasons(batch_dir: Path) -> dict[tuple[str, str, int], tuple[str, str]]:
    """(api, tool, run) -> (status, reason) from ``journal.sqlite``, read without knowing its exact
    schema: any table with api/tool/run(-ish) and status columns; the latest row per run wins."""
    path = Path(batch_dir) / "journal.sqlite"
    out: dict[tuple[str, str, int], tuple[str, str]] = {}
    if not path.is_file():
        return out
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            run_col = next((c for c in ("run", "repetition", "run_number", "rep", "n") if c in cols), None)
            reason_col = next(
                (c for c in ("reason", "failure_reason", "error", "message") if c in cols), None
            )
            if not {"api", "tool", "status"} <= set(cols) or run_col is None:
                continue
            reason_sql = f'"{reason_col}"' if reason_col else "''"
            rows = conn.execute(
                f'SELECT api, tool, "{run_col}", status, {reason_sql} FROM "{table}" ORDER BY rowid'
            ).fetchall()
            for api, tool, run, status, reason in rows:
                try:
                    key = (str(api), str(tool), int(run))
                except (TypeError, ValueError):
                    continue
                prev = out.get(key, ("", ""))
                out[key] = (str(status or prev[0]), str(reason or prev[1]))
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: the time-based coverage columns of a summary row (cumulative.time_area, cumulative.coverage_at)
TIME_COLUMNS = (
    *(f"{kind}_coverage_time_area" for kind in cumulative.KINDS),
    *(f"{kind}_coverage_{m}min" for m in cumulative.MINUTES for kind in ("line", "branch")),
)


def _time_columns(summary: Mapping[str, Any]) -> dict[str, Any]:
    coverage = summary.get("coverage") or {}
    area = coverage.get("time_area") or {}
    at = coverage.get("at_minutes") or {}
    out: dict[str, Any] = {f"{kind}_coverage_time_area": area.get(kind) for kind in cumulative.KINDS}
    for m in cumulative.MINUTES:
        for kind in ("line", "branch"):
            out[f"{kind}_coverage_{m}min"] = (at.get(str(m)) or {}).get(kind)
    return out


def summary_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One summary.json as a flat ``summary.csv`` row (values not yet formatted)."""
    req = summary.get("requests") or {}
    ops = summary.get("operations") or {}
    cov = (summary.get("coverage") or {}).get("final") or {}
    first = summary.get("first_2xx") or {}
    ver = summary.get("verification") or {}
    checks = {c.get("name"): c for c in ver.get("checks", [])}
    return {
        "status": summary.get("status", ""),
        "verified": bool(ver.get("verified", False)),
        "reason": summary.get("reason", ""),
        "failed_checks": " ".join(n for n, c in checks.items() if not c.get("passed")),
        "requests": req.get("requests"),
        "status_2xx": req.get("status_2xx"),
        "status_4xx": req.get("status_4xx"),
        "status_5xx": req.get("status_5xx"),
        "status_401": req.get("status_401"),
        "status_403": req.get("status_403"),
        "no_response": req.get("no_response"),
        "operations_total": ops.get("total"),
        "operations_covered": ops.get("covered"),
        "operations_5xx": ops.get("with_5xx"),
        "unique_failures": (summary.get("failures") or {}).get("unique"),
        "unique_failures_restgym": ((summary.get("failures") or {}).get("restgym") or {}).get("unique"),
        "operations_500_arat_rl": ((summary.get("failures") or {}).get("arat_rl") or {}).get(
            "operations_with_500"
        ),
        "unique_failures_llamaresttest": ((summary.get("failures") or {}).get("llamaresttest") or {}).get(
            "unique"
        ),
        **_time_columns(summary),
        "line_coverage": cov.get("line"),
        "branch_coverage": cov.get("branch"),
        "method_coverage": cov.get("method"),
        "seconds_to_first_2xx": first.get("seconds"),
        "requests_to_first_2xx": first.get("requests"),
        "requests_per_minute": checks.get("requests_per_minute", {}).get("measured"),
        "request_span_fraction": checks.get("request_span", {}).get("measured"),
        "coverage_samples_per_minute": checks.get("coverage_samples_per_minute", {}).get("measured"),
        "tool_restarts": summary.get("tool_restarts"),
    }


def write_batch_summary(batch_dir: Path) -> Path:
    """Write ``batch_dir/summary.csv``: one row per run, failed runs included with their reason.

    Runs are the ``<api>/<tool>/run-<n>`` folders plus the journal's runs that have no folder (never
    started, or failed before their folder existed). Status: the journal's (the run's final state),
    else metadata.json's; reason: metadata.json's, else the journal's. Runs without summary.json keep
    their identity and reason with empty metrics. Returns the CSV's path."""
    batch_dir = Path(batch_dir)
    journal = journal_reasons(batch_dir)
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str, int]] = set()
    for run_dir in find_run_dirs(batch_dir):
        api, tool, n = run_identity(run_dir)
        seen.add((api, tool, n or 0))
        summary = read_json(run_dir / "summary.json")
        metadata = read_json(run_dir / "metadata.json")
        row: dict[str, Any] = summary_row(summary) if summary else {"verified": False}
        status, reason = journal.get((api, tool, n or 0), ("", ""))
        row["status"] = status or str(metadata.get("status") or row.get("status") or "unknown")
        row["reason"] = metadata_reason(metadata) or str(row.get("reason") or "") or reason
        if not summary:
            row["reason"] = row["reason"] or "no summary.json"
        row.update(api=api, tool=tool, run=n, run_dir=str(run_dir.relative_to(batch_dir)))
        rows.append({c: _fmt(row.get(c)) for c in SUMMARY_COLUMNS})
    for (api, tool, n), (status, reason) in sorted(journal.items()):
        if (api, tool, n) not in seen:
            row = {"api": api, "tool": tool, "run": n, "status": status or "unknown", "verified": False}
            row["reason"] = reason or "no run folder"
            rows.append({c: _fmt(row.get(c)) for c in SUMMARY_COLUMNS})
    rows.sort(key=lambda r: (r["api"], r["tool"], int(r["run"]) if r["run"].isdigit() else 0))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = batch_dir / "summary.csv"
    _atomic_write(out, buf.getvalue())
    return out
