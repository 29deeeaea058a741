"""Is a run trustworthy? The checks researchers apply before a run enters a comparison (RESTgym's):

- the tool kept the API busy: at least ``min_requests_per_minute`` requests per budget-minute (130);
- the traffic covers the budget: the span from the first request to the last response is at least
  ``min_span_fraction`` of the budget (90 %);
- coverage was sampled often enough for curves: at least ``min_samples_per_minute`` samples per
  budget-minute (12, i.e. every 5 s);
- the traffic database is intact: SQLite's ``PRAGMA integrity_check`` answers ``ok``;
- the tool ran as one process, as its authors ran it: it restarted (crashed and was started again
  by its entrypoint, ``TOOL_RESTART`` lines of :mod:`remote_runner.analysis.tool_log`) at most
  ``max_tool_restarts`` times (3: a tool in a crash loop, like LlamaRestTest on specs it cannot
  read, restarts every few seconds, far above that; a rare crash late in an hour-long run, whose
  restart costs a model reload of tens of seconds, is tolerated, and is recorded all the same).

Each check reports its measured value, its threshold and pass/fail; a run is verified when all pass.
The checks are pure except :func:`database_integrity`, which opens the file read-only.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    min_requests_per_minute: float = 130.0
    min_span_fraction: float = 0.9
    min_samples_per_minute: float = 12.0
    max_tool_restarts: int = 3


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    measured: float | str | None
    threshold: float | str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def requests_per_minute(requests: int, budget_seconds: float, threshold: float) -> Check:
    minutes = budget_seconds / 60.0
    value = requests / minutes if minutes > 0 else 0.0
    return Check(
        "requests_per_minute",
        passed=minutes > 0 and value >= threshold,
        measured=round(value, 3),
        threshold=threshold,
        detail=f"{requests} requests in a {budget_seconds:g} s budget",
    )


def request_span(span_seconds: float, budget_seconds: float, threshold: float) -> Check:
    fraction = span_seconds / budget_seconds if budget_seconds > 0 else 0.0
    return Check(
        "request_span",
        passed=budget_seconds > 0 and fraction >= threshold,
        measured=round(fraction, 4),
        threshold=threshold,
        detail=f"requests span {span_seconds:.1f} s of a {budget_seconds:g} s budget",
    )


def coverage_samples_per_minute(samples: int, budget_seconds: float, threshold: float) -> Check:
    minutes = budget_seconds / 60.0
    value = samples / minutes if minutes > 0 else 0.0
    return Check(
        "coverage_samples_per_minute",
        passed=minutes > 0 and value >= threshold,
        measured=round(value, 3),
        threshold=threshold,
        detail=f"{samples} coverage samples",
    )


def integrity_result(answer: str | None) -> Check:
    """``answer`` is the first row of ``PRAGMA integrity_check`` or ``None`` when there is no database."""
    return Check(
        "traffic_db_integrity",
        passed=answer == "ok",
        measured=answer,
        threshold="ok",
        detail="" if answer is not None else "no traffic database",
    )


def database_integrity(db_path: Path) -> Check:
    """Run ``PRAGMA integrity_check`` on a read-only connection."""
    if not db_path.is_file():
        return integrity_result(None)
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return integrity_result(f"error: {exc}")
    answer = "; ".join(str(r[0]) for r in rows[:5]) if rows else "no answer"
    return integrity_result(answer)


def tool_restarts(restarts: int, threshold: int, reasons: tuple[str, ...] = ()) -> Check:
    distinct = list(dict.fromkeys(reasons))
    return Check(
        "tool_restarts",
        passed=restarts <= threshold,
        measured=restarts,
        threshold=threshold,
        detail=("; ".join(distinct[:3]) + (" ..." if len(distinct) > 3 else "")) if distinct else "",
    )


def verify(
    *,
    requests: int,
    span_seconds: float,
    coverage_samples: int,
    budget_seconds: float,
    integrity: Check,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    restarts: int = 0,
    restart_reasons: tuple[str, ...] = (),
) -> tuple[bool, tuple[Check, ...]]:
    """All checks of one run; the run is verified when every check passed."""
    checks = (
        requests_per_minute(requests, budget_seconds, thresholds.min_requests_per_minute),
        request_span(span_seconds, budget_seconds, thresholds.min_span_fraction),
        coverage_samples_per_minute(coverage_samples, budget_seconds, thresholds.min_samples_per_minute),
        integrity,
        tool_restarts(restarts, thresholds.max_tool_restarts, restart_reasons),
    )
    return all(c.passed for c in checks), checks


def recorded_requests(rows: int, sent: int) -> Check:
    """Rows vs the tool's own count (``TOOL_REQUESTS sent=<n>``, :mod:`remote_runner.analysis.tool_log`):
    every request the tool sent through the proxy must have its row, so rows short of it fail the run (the
    proxy forwarded requests it did not record). More rows than sent is fine: retries and redirects."""
    return Check(
        "recorded_requests",
        passed=rows >= sent,
        measured=rows,
        threshold=sent,
        detail=f"{rows} rows recorded for the {sent} requests the tool says it sent",
    )


# --- the exclusion policy (issue 22) --------------------------------------------------------------
# A check that fails because the harness broke (the recording or the sampling) says nothing about the
# tool: such an attempt is re-run (RESTgym v2 deletes and re-runs a run that fails check.py). A check
# that fails because of the tool (too slow, stopped early, restarted) is a result: the run is kept in
# the main analysis and flagged (RESTgym v3 turned rate and span into warnings). An API that died and
# an engine that went away already end the attempt as failed or interrupted (experiment.py), and the
# scheduler re-runs it.

#: checks whose failure means the recording broke: the run is re-run, and never enters an analysis
INFRASTRUCTURE_CHECKS = ("traffic_db_integrity", "recorded_requests")
#: checks whose failure is the tool's behaviour: the run is kept and flagged
TOOL_CHECKS = ("requests_per_minute", "request_span", "tool_restarts")
#: the longest stretch without a coverage sample (from the start, between samples, to the budget's
#: end) before the sampling counts as broken: six 5 s intervals
MAX_SAMPLE_GAP_SECONDS = 30.0


def sampling_gap(sample_seconds: list[float], budget_seconds: float) -> float:
    """The longest stretch of ``[0, budget]`` without a coverage sample (seconds from the start)."""
    inside = sorted(t for t in sample_seconds if 0 <= t <= budget_seconds)
    edges = [0.0, *inside, budget_seconds]
    return max(b - a for a, b in itertools.pairwise(edges))


def sampling_broken(sample_seconds: list[float], budget_seconds: float) -> str | None:
    """Why the coverage sampling broke (samples began, then stopped or paused for longer than
    :data:`MAX_SAMPLE_GAP_SECONDS`), or None. A run without any sample is not judged here: an API
    without a coverage agent has none by design, and ``coverage_samples_per_minute`` says so."""
    if not sample_seconds:
        return None
    gap = sampling_gap(sample_seconds, budget_seconds)
    if gap > MAX_SAMPLE_GAP_SECONDS:
        return f"coverage sampling stopped: no sample for {gap:.0f} s (at most {MAX_SAMPLE_GAP_SECONDS:g} s)"
    return None


def classify_checks(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(infrastructure problems, tool flags) of a run's summary.json: each a line naming the check,
    what was measured and the threshold. The proxy refusing to record a request and a sampling that
    broke are infrastructure problems too."""
    infra: list[str] = []
    flags: list[str] = []
    verification = summary.get("verification") or {}
    for check in verification.get("checks") or []:
        if not isinstance(check, dict) or check.get("passed"):
            continue
        name = str(check.get("name"))
        line = f"{name}: {check.get('measured')} (needs {check.get('threshold')})"
        if name in INFRASTRUCTURE_CHECKS:
            if name == "traffic_db_integrity" and check.get("measured") is None:
                continue  # no traffic database at all: an API without the recording proxy
            infra.append(line)
        elif name in TOOL_CHECKS:
            flags.append(line)
        else:
            flags.append(line)  # coverage_samples_per_minute: sampled, but less often than asked
    refused = summary.get("proxy_refused")
    if isinstance(refused, int) and not isinstance(refused, bool) and refused > 0:
        infra.append(f"the recording proxy refused {refused} request(s) it could not record")
    series = (summary.get("coverage") or {}).get("series") or []
    budget = summary.get("budget_seconds")
    if isinstance(budget, int | float) and series:
        seconds = [float(p[0]) for p in series if isinstance(p, list) and p and isinstance(p[0], int | float)]
        broken = sampling_broken(seconds, float(budget))
        if broken:
            infra.append(broken)
    return infra, flags
