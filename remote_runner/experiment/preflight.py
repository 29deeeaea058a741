"""Preflight: before the first real run of a batch, each selected API gets one short smoke run
through the same pipeline as the real runs (:func:`remote_runner.experiment.lifecycle.run`, with the batch's
first tool and ``preflight_seconds`` of budget). An API passes when

- its container came up and got ready through the recording proxy (sidecars up: the supervisor
  starts the service only after its databases opened their ports and their set-up, e.g. the
  ``db-init.sh`` login check, succeeded),
- the traffic database holds at least one recorded request,
- the coverage series holds a sample with a non-zero class count (covered + missed lines > 0),
- the API container did not die during the smoke run (a service that loses its database
  connection exits, and the outcome says so).

The smoke runs are kept apart from the real runs, in ``BATCH/preflight/<api>/``. Broken APIs are
reported in one table (API, reason, log tail); the batch stops before any budget is spent, or,
with ``skip_broken_apis``, goes on without them. The judging is pure (:func:`judge`); the smoke run
itself is passed in, so tests can drive both.
"""

from __future__ import annotations

import csv
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_runner.common import exit_codes
from remote_runner.experiment.run_key import RunKey

log = logging.getLogger(__name__)

PREFLIGHT_DIR = "preflight"
TAIL_LINES = 12


@dataclass(frozen=True)
class Evidence:
    """What one smoke run left behind (read from its folder)."""

    status: str  # the experiment outcome's status
    reason: str | None
    requests: int | None  # rows in traffic.sqlite, None when absent/unreadable
    classes_seen: int  # largest covered+missed line count of any coverage sample
    log_tail: str


@dataclass(frozen=True)
class Verdict:
    api: str
    ok: bool
    reason: str
    log_tail: str
    folder: Path


def judge(ev: Evidence) -> str | None:
    """Why the API is broken, or ``None`` when the smoke run shows everything working."""
    problems: list[str] = []
    if ev.status != "succeeded":
        problems.append(f"smoke run {ev.status}: {ev.reason or 'no reason given'}")
    if ev.requests is None:
        problems.append("no traffic database (the recording proxy did not start)")
    elif ev.requests == 0:
        problems.append("no request recorded through the proxy")
    if ev.classes_seen <= 0:
        problems.append("no coverage sample with a non-zero class count (agent, classes or sampler)")
    return "; ".join(problems) or None


def read_evidence(folder: Path, status: str, reason: str | None) -> Evidence:
    requests: int | None = None
    db = folder / "traffic.sqlite"
    if db.is_file():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                requests = int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
        except sqlite3.Error:
            requests = None
    classes = 0
    series = folder / "coverage" / "series.csv"
    if series.is_file():
        with series.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    classes = max(classes, int(row.get("line_covered", 0)) + int(row.get("line_missed", 0)))
                except (TypeError, ValueError):
                    continue
    tail = ""
    api_log = folder / "logs" / "api.log"
    if api_log.is_file():
        tail = "\n".join(api_log.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:])
    return Evidence(status, reason, requests, classes, tail)


def table(verdicts: Sequence[Verdict]) -> str:
    """One table of the broken APIs: name, reason, where the smoke run is, its log tail."""
    broken = [v for v in verdicts if not v.ok]
    if not broken:
        return f"preflight: all {len(verdicts)} APIs passed"
    width = max(len(v.api) for v in broken)
    lines = [f"preflight: {len(broken)} of {len(verdicts)} APIs broken", f"{'API':<{width}}  reason"]
    for v in broken:
        lines.append(f"{v.api:<{width}}  {v.reason}  (smoke run: {v.folder})")
    for v in broken:
        lines.append(f"--- {v.api}: last lines of its API log ---")
        lines.append(v.log_tail or "(no API log)")
    return "\n".join(lines)


SmokeRun = Callable[[RunKey, Path], Any]  # (key, run folder) -> experiment.Outcome


def check(
    apis: Sequence[str],
    tool: str,
    batch_dir: Path,
    smoke: SmokeRun,
    stop: threading.Event,
    *,
    parallel: bool = False,
) -> list[Verdict]:
    """One smoke run per API. On one machine they run one after the other (each is short; they must
    not compete for the CPUs the real runs will measure); in cluster mode (``parallel``) all at once,
    each on a worker of its own as Ray places it. ``smoke`` runs the experiment into the folder it is
    given."""

    def one(api: str) -> Verdict:
        folder = batch_dir / PREFLIGHT_DIR / api
        key = RunKey(0, api, tool)
        log.info("preflight: smoke run of %s with %s into %s", api, tool, folder)
        try:
            outcome = smoke(key, folder)
            status, reason = str(outcome.status), outcome.reason
        except Exception as exc:  # a crash of the smoke run is a broken API, reported with the rest
            status, reason = "failed", f"smoke run raised {type(exc).__name__}: {exc}"
        ev = read_evidence(folder, status, reason)
        why = judge(ev)
        log.info("preflight: %s %s", api, "passed" if why is None else f"BROKEN: {why}")
        return Verdict(api, why is None, why or "ok", ev.log_tail, folder)

    if parallel and len(apis) > 1:
        with ThreadPoolExecutor(max_workers=len(apis), thread_name_prefix="preflight") as pool:
            return list(pool.map(one, apis))
    verdicts: list[Verdict] = []
    for api in apis:
        if stop.is_set():
            break
        verdicts.append(one(api))
    return verdicts


EXIT_BROKEN = exit_codes.PREFLIGHT_FAILED  # run_batch's exit code when the preflight stops the batch


def gate(
    settings: Any,
    apis: tuple[str, ...],
    tools: tuple[str, ...],
    batch_dir: Path,
    smoke: SmokeRun,
    stop: threading.Event,
    *,
    parallel: bool = False,
) -> tuple[str, ...] | None:
    """The preflight of a new batch: the APIs the batch goes on with, or ``None`` to stop it (the
    table of broken APIs is logged). ``smoke`` is the batch's own pipeline for one short run (the
    scheduler builds it: on this machine's engine, or on the cluster's workers through the same
    placement as the real runs, never on the head)."""
    if not apis or not tools:
        return apis
    verdicts = check(apis, tools[0], batch_dir, smoke, stop, parallel=parallel)
    if stop.is_set():
        return None
    report = table(verdicts)
    (batch_dir / PREFLIGHT_DIR).mkdir(parents=True, exist_ok=True)
    (batch_dir / PREFLIGHT_DIR / "report.txt").write_text(report + "\n", encoding="utf-8")
    broken = {v.api for v in verdicts if not v.ok}
    if not broken:
        log.info("%s", report)
        return apis
    log.error("%s", report)
    if not settings.skip_broken_apis:
        log.error("preflight: the batch stops before any real run (skip_broken_apis leaves them out instead)")
        return None
    kept = tuple(a for a in apis if a not in broken)
    log.warning("preflight: going on without %s", ", ".join(sorted(broken)))
    return kept or None
