"""The batch report: ``python -m remote_runner report BATCH_DIR [--out DIR]``.

Reads only the batch folder (each run's ``summary.json``; ``metadata.json`` for failure reasons), so
it runs on a laptop on a downloaded batch. Writes ``report.md`` and ``report.html`` (same content; the
HTML is self-contained apart from the PNG files next to it) and the PNG plots:

- per API, per tool: median and interquartile range of every metric, over verified runs, with n;
- per API, per pair of tools: two-sided Mann-Whitney U p-value and Vargha-Delaney A12 per metric
  (:mod:`remote_runner.analysis.stats`);
- per API: coverage over time (line, branch, method), median line and IQR band per tool, of the
  verified runs (an API without one gets no plot, and a line saying why);
- a bar chart of operations covered (median, IQR whiskers) per API and tool;
- every failed or unverified run, with its reason; these runs are left out of the statistics;
- per API: every metric again at the API's smallest request count (the fewest requests of any
  verified run of that API, rounded down to a row of the cumulative series, as RESTgym compares
  tools) and the areas under the cumulative curves up to that count, with the same statistics;
- across APIs, for two or more tools: mean ranks, the Friedman test, Nemenyi post-hoc p-values and a
  critical-difference diagram per ranked metric, naming the APIs that went in; once on the values at
  the budget's end and once on those at each API's smallest request count.

Both fault counts are shown: ours (per operation and status, normalised tokens, first similar group,
Jaccard 0.8) and RESTgym's (one pool per run, per-API text cleaning and threshold;
:mod:`remote_runner.analysis.faults`).

The document is built once as a list of blocks and rendered twice (Markdown, HTML).
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from remote_runner.analysis import cumulative, fault_report, results, stats, verification
from remote_runner.analysis.results import (
    find_run_dirs,
    journal_reasons,
    metadata_reason,
    read_json,
    run_identity,
    summary_row,
)
from remote_runner.common.sizes import format_size

# (column of summary_row, label, format)
METRICS: tuple[tuple[str, str, str], ...] = (
    ("line_coverage", "Line coverage", "pct"),
    ("branch_coverage", "Branch coverage", "pct"),
    ("method_coverage", "Method coverage", "pct"),
    ("operations_covered", "Operations covered (2xx)", "num"),
    ("operations_5xx", "Operations with 5xx", "num"),
    ("confirmed_faults", "Confirmed unique faults (replayed, by trace)", "num"),
    ("unique_failures", "Unique failures (ours)", "num"),
    ("unique_failures_restgym", "Unique failures (RESTgym)", "num"),
    ("operations_500_arat_rl", "Operations with a 500 (ARAT-RL)", "num"),
    ("unique_failures_llamaresttest", "Unique 500/502 messages per path prefix (LlamaRestTest)", "num"),
    ("requests", "Requests", "num"),
    ("status_2xx", "2xx responses", "num"),
    ("status_4xx", "4xx responses", "num"),
    ("status_5xx", "5xx responses", "num"),
    ("status_401", "401 responses", "num"),
    ("status_403", "403 responses", "num"),
    ("seconds_to_first_2xx", "Seconds to first 2xx", "num"),
    ("requests_to_first_2xx", "Requests to first 2xx", "num"),
    ("line_coverage_time_area", "Line coverage, area over time (mean)", "pct"),
    ("branch_coverage_time_area", "Branch coverage, area over time (mean)", "pct"),
    ("line_coverage_10min", "Line coverage at 10 min", "pct"),
    ("line_coverage_30min", "Line coverage at 30 min", "pct"),
    ("line_coverage_60min", "Line coverage at 60 min", "pct"),
    ("branch_coverage_10min", "Branch coverage at 10 min", "pct"),
    ("branch_coverage_30min", "Branch coverage at 30 min", "pct"),
    ("branch_coverage_60min", "Branch coverage at 60 min", "pct"),
)
#: summary_row columns not in the cumulative series (the series compares at equal requests)
_NOT_IN_SERIES = frozenset(
    {
        "requests",
        "seconds_to_first_2xx",
        "requests_to_first_2xx",
        "operations_500_arat_rl",
        "unique_failures_llamaresttest",
        "confirmed_faults",
        *results.TIME_COLUMNS,
    }
)
# metrics of the cumulative series compared at the per-API smallest request count and as areas: every
# metric above but the request count itself (the series' axis) and the first-2xx figures (not in it)
SERIES_METRICS: tuple[tuple[str, str, str], ...] = tuple(m for m in METRICS if m[0] not in _NOT_IN_SERIES)
# ranked across APIs (higher is better), on each API's median over its verified runs
RANK_METRICS: tuple[tuple[str, str], ...] = (
    ("line_coverage", "Line coverage"),
    ("branch_coverage", "Branch coverage"),
    ("method_coverage", "Method coverage"),
    ("operations_covered", "Operations covered (2xx)"),
    ("unique_failures_restgym", "Unique failures (RESTgym)"),
    ("unique_failures", "Unique failures (ours)"),
)
ALPHA = 0.05
COVERAGE_KINDS = (("line", 1), ("branch", 2), ("method", 3))  # index into series rows
FAILED_STATUSES = frozenset({"failed", "interrupted", "error", "aborted", "cancelled", "timeout", "oom"})
UNFINISHED_STATUSES = frozenset({"pending", "running"})
GRID_POINTS = 200


def _series_array(points: Any) -> Any:
    """Coverage series as an (n, 4) float array: seconds, line, branch, method; NaN where a point
    has no value (a kind with no total, or a value that is not a finite number). Points that are
    not lists of at least 4, or have no time, are left out."""
    import numpy as np

    if isinstance(points, np.ndarray):
        return points
    rows = [p[:4] for p in points if isinstance(p, list | tuple) and len(p) >= 4]
    out = np.full((len(rows), 4), np.nan)
    for j, cells in enumerate(zip(*rows, strict=True)):
        if set(map(type, cells)) <= {int, float, type(None)}:  # as written: one C-speed conversion
            values = np.array(cells, dtype=float)  # None -> NaN
            values[~np.isfinite(values)] = np.nan
        else:
            values = np.array([np.nan if (v := _num(c)) is None else v for c in cells], dtype=float)
        out[:, j] = values
    return out[~np.isnan(out[:, 0])]


@dataclass(frozen=True, eq=False)
class CumulativeColumns:
    """A run's cumulative series (summary.json ``cumulative``) as one array per column the report
    compares: the request count and each metric (:data:`cumulative.METRIC_COLUMNS`), NaN where a
    row has no number. A one-hour run has about 1,440 rows; as one dict per row, 660 such runs held
    most of the report's 950 MB (issue 24), as columns they take under 100 MB. A column whose values
    are all exact in float32 (counts below 2**24) is kept so; coverage fractions stay float64.
    :meth:`row_at` and :meth:`areas` give what :func:`cumulative.row_at` and
    :func:`cumulative.areas` give on the rows (summed in row order with Python's ``sum``, as
    there); tests/results/test_report_columns.py checks."""

    requests: Any = None  # float64, NaN where a row's count is not an integer
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, columns: Sequence[Any], rows: Sequence[Any]) -> CumulativeColumns:
        import numpy as np

        at = {c: i for i, c in enumerate(columns) if isinstance(c, str)}
        kept = [row for row in rows if isinstance(row, list)]
        width = len(columns)
        # one tuple per column at C speed when every row is whole (as write_run_summary writes them)
        transposed = list(zip(*kept, strict=True)) if kept and all(len(r) == width for r in kept) else None

        def column(name: str, integers: bool = False) -> Any:
            i = at.get(name)
            if i is None:
                return np.full(len(kept), np.nan)
            cells = transposed[i] if transposed is not None else [r[i] if i < len(r) else None for r in kept]
            kinds = set(map(type, cells))
            if kinds <= ({int} if integers else {int, float, type(None)}):
                values = np.array(cells, dtype=float)  # None -> NaN
            else:  # bools, strings, ...: not numbers here
                values = np.full(len(kept), np.nan)
                for k, v in enumerate(cells):
                    whole = isinstance(v, int) and not isinstance(v, bool)
                    if whole or (not integers and isinstance(v, float)):
                        values[k] = v
            narrow = values.astype(np.float32)
            same = np.array_equal(narrow.astype(np.float64), values, equal_nan=True)
            return narrow if same else values

        requests = column("requests", integers=True).astype(np.float64)
        return cls(requests, {c: column(c) for c in cumulative.METRIC_COLUMNS})

    def row_at(self, requests: int) -> dict[str, float | None] | None:
        """The metrics of the first row at exactly ``requests`` requests, if the run reached it
        (None where a row holds no finite number, as :func:`_series_num` reads a row dict)."""
        import numpy as np

        if self.requests is None or not len(self.requests):
            return None
        hits = np.flatnonzero(self.requests == requests)
        if not len(hits):
            return None
        i = int(hits[0])
        return {c: v if math.isfinite(v := float(a[i])) else None for c, a in self.metrics.items()}

    def areas(self, up_to: int) -> dict[str, float | None]:
        """Sum of each metric over the rows up to ``up_to`` requests; None when a row lacks it."""
        if self.requests is None or not len(self.requests):
            return {c: None for c in cumulative.METRIC_COLUMNS}
        kept = self.requests <= up_to
        out: dict[str, float | None] = {}
        for c in cumulative.METRIC_COLUMNS:
            values = self.metrics[c][kept]
            if not len(values) or bool(math.isnan(values.sum())):
                out[c] = None
            else:
                out[c] = float(sum(values.astype(float).tolist()))
        return out


@dataclass(frozen=True)
class Run:
    api: str
    tool: str
    run: int | None
    status: str
    verified: bool
    reason: str
    values: dict[str, float | None]
    #: coverage series, (n, 4) floats: seconds, line, branch, method (NaN: no value); a sequence of
    #: such points given here becomes that array
    series: Any
    budget_seconds: float | None
    path: str
    cumulative: CumulativeColumns = field(default_factory=CumulativeColumns)
    #: the tool's restarts and their reasons (summary.json ``tool_restarts`` / ``tool_crashes``)
    tool_restarts: int = 0
    crash_reasons: tuple[str, ...] = ()
    #: the exclusion policy (verification.classify_checks): why the recording or sampling broke (the
    #: run is in no analysis), and the tool's own shortfalls (kept in the main analysis, flagged)
    infrastructure: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    #: summary.json was there and could be read
    summarised: bool = False
    #: the run's faults.json (remote_runner/batch/replay.py), None when it was not replayed
    replay: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", _series_array(self.series))

    @property
    def failed(self) -> bool:
        return self.status.lower() in FAILED_STATUSES or self.reason == "no summary.json"

    @property
    def completed(self) -> bool:
        """In the main analysis: the run succeeded, its summary is sound and its recording and
        sampling worked (whatever its tool did: slow, stopped early or restarted, it is a result)."""
        return (
            self.summarised
            and self.status.lower() == "succeeded"
            and not self.infrastructure
            and not self.reason.startswith("damaged")
        )


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


# Fields of summary.json the report reads, and the JSON types they must have (None allowed where the
# run may lack the figure). A summary that breaks one is damaged: named, never counted as verified.
_SUMMARY_TYPES: tuple[tuple[tuple[str, ...], tuple[type, ...], bool], ...] = (
    (("status",), (str,), False),
    (("budget_seconds",), (int, float), True),
    (("verification",), (dict,), False),
    (("verification", "verified"), (bool,), False),
    (("verification", "checks"), (list,), False),
    (("requests",), (dict,), False),
    (("requests", "requests"), (int,), False),
    (("coverage",), (dict,), False),
    (("coverage", "series"), (list,), False),
    (("operations",), (dict,), False),
    (("operations", "covered"), (int,), False),
)


def summary_problem(summary: Any) -> str | None:
    """Why a parsed summary.json cannot be trusted (wrong shape or field types), or None (pure)."""
    if not isinstance(summary, dict):
        return f"expected a JSON object, found {type(summary).__name__}"
    for path, types, nullable in _SUMMARY_TYPES:
        value: Any = summary
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return f"field {'.'.join(path)} missing"
            value = value[part]
        if value is None and nullable:
            continue
        if isinstance(value, bool) and bool not in types:
            return f"field {'.'.join(path)} is a boolean, expected {' or '.join(t.__name__ for t in types)}"
        if not isinstance(value, types):
            return (
                f"field {'.'.join(path)} is {type(value).__name__}, "
                f"expected {' or '.join(t.__name__ for t in types)}"
            )
    return None


def read_summary(path: Path) -> tuple[dict[str, Any], str | None]:
    """``(summary, problem)``: ``({}, "no summary.json")`` when absent; ``({}, "damaged ...")`` naming
    the file and the error when it cannot be read, parsed or type-checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, "no summary.json"
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"damaged {path}: cannot read it ({exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return {}, f"damaged {path}: not valid JSON ({exc})"
    problem = summary_problem(data)
    if problem is not None:
        return {}, f"damaged {path}: {problem}"
    return data, None


def load_runs(batch_dir: Path) -> list[Run]:
    runs = []
    for run_dir in find_run_dirs(batch_dir):
        api, tool, n = run_identity(run_dir)
        summary, summary_issue = read_summary(run_dir / "summary.json")
        metadata = read_json(run_dir / "metadata.json")
        row = summary_row(summary) if summary else {}
        status = str(metadata.get("status") or summary.get("status") or "unknown")
        reason = metadata_reason(metadata) or str(summary.get("reason") or "")
        checks = (summary.get("verification") or {}).get("checks", []) if summary else []
        failed_checks = [
            f"{c.get('name')}: {c.get('measured')} (needs {c.get('threshold')})"
            for c in checks
            if isinstance(c, dict) and not c.get("passed")
        ]
        if summary_issue is not None and summary_issue.startswith("damaged"):
            reason = f"{summary_issue}; {reason}" if reason else summary_issue
        elif not summary:
            reason = reason or "no summary.json"
        elif failed_checks and not reason:
            reason = "; ".join(failed_checks)
        elif failed_checks:
            reason = f"{reason}; " + "; ".join(failed_checks)
        series_raw = ((summary.get("coverage") or {}).get("series") or []) if summary else []
        series = _series_array(series_raw)
        block = (summary.get("cumulative") or {}) if summary else {}
        rows = CumulativeColumns.of(block.get("columns") or [], block.get("rows") or [])
        infra, flags = verification.classify_checks(summary) if summary else ([], [])
        replayed = fault_report.load_state(run_dir) or None
        values = {key: _num(row.get(key)) for key, _, _ in METRICS}
        # only a finished replay gives the count (a partial one would undercount)
        values["confirmed_faults"] = (
            _num(replayed.get("unique_confirmed")) if replayed and replayed.get("complete") else None
        )
        runs.append(
            Run(
                api=api,
                tool=tool,
                run=n,
                infrastructure=tuple(infra),
                flags=tuple(flags),
                summarised=bool(summary),
                cumulative=rows,
                status=status,
                verified=bool(row.get("verified")) and status.lower() not in FAILED_STATUSES,
                reason=reason,
                values=values,
                replay=replayed,
                series=series,
                budget_seconds=_num(summary.get("budget_seconds")) if summary else None,
                path=str(run_dir.relative_to(batch_dir)),
                tool_restarts=int(summary.get("tool_restarts") or 0) if summary else 0,
                crash_reasons=tuple(
                    str(c.get("reason", "")) for c in summary.get("tool_crashes") or [] if isinstance(c, dict)
                )
                if summary
                else (),
            )
        )
    seen = {(r.api, r.tool, r.run) for r in runs}
    for (api, tool, n), (status, reason) in sorted(journal_reasons(batch_dir).items()):
        if (api, tool, n) not in seen:  # in the plan, but no folder: never started or lost early
            runs.append(
                Run(
                    api=api,
                    tool=tool,
                    run=n,
                    status=status or "unknown",
                    verified=False,
                    reason=reason or "no run folder",
                    values={key: None for key, _, _ in METRICS},
                    series=(),
                    budget_seconds=None,
                    path="",
                )
            )
    runs.sort(key=lambda r: (r.api, r.tool, r.run or 0))
    return runs


# --- document model -------------------------------------------------------------------------------


@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def image(self, file: str, alt: str) -> None:
        self.blocks.append(("img", (file, alt)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                out.append("#" * data[0] + " " + data[1])
            elif kind == "p":
                out.append(data)
            elif kind == "table":
                header, rows = data

                def cell(s: str) -> str:
                    return s.replace("|", "\\|").replace("\n", " ")

                out.append("| " + " | ".join(cell(h) for h in header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out.extend("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)
            elif kind == "img":
                out.append(f"![{data[1]}]({data[0]})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        esc = html.escape
        body: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                body.append(f"<h{data[0]}>{esc(data[1])}</h{data[0]}>")
            elif kind == "p":
                body.append(f"<p>{esc(data)}</p>")
            elif kind == "table":
                header, rows = data
                body.append(
                    "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
                )
                body.append(
                    "<tbody>"
                    + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
                    + "</tbody></table>"
                )
            elif kind == "img":
                body.append(f'<p><img src="{esc(data[0], quote=True)}" alt="{esc(data[1], quote=True)}"></p>')
        style = (
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
            "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
            "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
        )
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


# --- statistics -----------------------------------------------------------------------------------


def _fmt_value(value: float, kind: str) -> str:
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.1f}"


def describe(values: Sequence[float], kind: str) -> str:
    """``median [Q1, Q3]`` or a dash for no values."""
    if not values:
        return "-"
    q1, q3 = stats.iqr(values)
    return f"{_fmt_value(stats.median(values), kind)} [{_fmt_value(q1, kind)}, {_fmt_value(q3, kind)}]"


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metric_values(runs: Sequence[Run], key: str) -> list[float]:
    return [v for r in runs if (v := r.values.get(key)) is not None]


def pairwise(a: Sequence[Run], b: Sequence[Run], key: str) -> tuple[float, float] | None:
    """(p-value, A12 of a over b) for one metric, or ``None`` when a side has no values."""
    xa, xb = metric_values(a, key), metric_values(b, key)
    if not xa or not xb:
        return None
    return stats.mann_whitney_u(xa, xb).p_value, stats.a12(xa, xb)


def _series_num(value: Any) -> float | None:
    return None if isinstance(value, bool) else _num(value)


def smallest_point(runs: Sequence[Run]) -> tuple[int | None, int | None]:
    """(smallest request count of these runs, the series row the tools are compared at)."""
    counts = [int(v) for r in runs if (v := r.values.get("requests")) is not None]
    if not counts:
        return None, None
    smallest = min(counts)
    return smallest, cumulative.comparison_point(smallest)


@dataclass(frozen=True)
class AtPoint:
    """One tool's verified runs of an API at the API's comparison point: each run's series row there
    and its areas up to there, found once per run (the tables and the ranks then read them per
    metric; finding them per metric was most of the report's time on large batches). Runs that did
    not reach the point are not in it."""

    point: int
    rows: tuple[Mapping[str, Any], ...]
    areas: tuple[dict[str, float | None], ...]

    @classmethod
    def of(cls, runs: Sequence[Run], point: int) -> AtPoint:
        rows: list[Mapping[str, Any]] = []
        areas: list[dict[str, float | None]] = []
        for r in runs:
            row = r.cumulative.row_at(point)
            if row is not None:
                rows.append(row)
                areas.append(r.cumulative.areas(point))
        return cls(point, tuple(rows), tuple(areas))

    def values(self, key: str) -> list[float]:
        """Each run's ``key`` at the point (runs without a value are skipped)."""
        return [v for row in self.rows if (v := _series_num(row.get(key))) is not None]

    def area_values(self, key: str) -> list[float]:
        return [v for a in self.areas if (v := a.get(key)) is not None]


def values_at(runs: Sequence[Run], point: int, key: str) -> list[float]:
    """Each run's ``key`` at its series row of ``point`` requests (runs without one are skipped)."""
    return AtPoint.of(runs, point).values(key)


def area_values(runs: Sequence[Run], point: int, key: str) -> list[float]:
    return AtPoint.of(runs, point).area_values(key)


@dataclass(frozen=True)
class EqualRequests:
    """An API's comparison at equal requests: the fewest requests of its verified runs, the series
    row that rounds it down to (None below one row) and every tool's runs there."""

    smallest: int | None
    point: int | None
    at: dict[str, AtPoint]

    @classmethod
    def of(cls, by_tool: dict[str, list[Run]]) -> EqualRequests:
        smallest, point = smallest_point([r for rs in by_tool.values() for r in rs])
        at = {} if point is None else {t: AtPoint.of(rs, point) for t, rs in by_tool.items()}
        return cls(smallest, point, at)


def _compare(xa: Sequence[float], xb: Sequence[float]) -> str:
    """One pair alone (a family of one: the Holm p is the raw p)."""
    pairs = stats.pairwise({"a": xa, "b": xb})
    return _pair_cell(pairs.get(("a", "b")))


def _pair_cell(pair: stats.Pair | None) -> str:
    """``p=<Holm> (uncorrected <raw>), A12=<a12> <magnitude>``; a dash without values on both sides."""
    if pair is None:
        return "-"
    return f"p={_fmt_p(pair.p_holm)} (uncorrected {_fmt_p(pair.p_raw)}), A12={pair.a12:.2f} {pair.magnitude}"


def family_cells(samples: Mapping[str, Sequence[float]], pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The cells of one (API, metric) family: every pair's Holm-corrected p within the family (the
    tools with values on this metric), its raw p and A12 with its magnitude label."""
    got = stats.pairwise(samples)
    cells = []
    for a, b in pairs:
        pair = got.get((a, b)) if a < b else got.get((b, a))
        if pair is not None and (a, b) != (pair.a, pair.b):  # A12 of the first tool named
            pair = stats.Pair(a, b, pair.p_raw, pair.p_holm, 1.0 - pair.a12)
        cells.append(_pair_cell(pair))
    return cells


#: what a ranking ranks on: each (API, tool)'s median at the budget's end, or at the API's smallest
#: request count (the series row of :class:`EqualRequests`)
BUDGET_END = "budget-end"
EQUAL_REQUESTS = "equal-requests"
BASIS_TEXT = {BUDGET_END: "at the budget's end", EQUAL_REQUESTS: "at equal requests"}


@dataclass(frozen=True)
class Ranking:
    metric: str
    label: str
    tools: tuple[str, ...]
    apis: tuple[str, ...]  # the APIs that went in: every tool has a verified value there
    left_out: tuple[str, ...]  # APIs without a value for some tool
    result: stats.Friedman | None  # None with fewer than 2 tools or no API
    nemenyi: tuple[tuple[float, ...], ...] = ()
    critical_difference: float | None = None
    basis: str = BUDGET_END
    points: tuple[int, ...] = ()  # EQUAL_REQUESTS: the request count of each API that went in
    #: each left-out API with the tools that have no value there (no API is dropped silently)
    missing: tuple[tuple[str, tuple[str, ...]], ...] = ()


def rank_tools(
    groups: dict[str, dict[str, list[Run]]],
    key: str,
    label: str,
    equal: Mapping[str, EqualRequests] | None = None,
) -> Ranking:
    """Friedman over APIs x tools on each (API, tool)'s median of ``key`` over verified runs: at the
    budget's end, or, given ``equal`` (per API), at each API's smallest request count (an API whose
    smallest verified run sent fewer requests than one series row has no such value)."""
    tools = tuple(sorted({t for by_tool in groups.values() for t in by_tool}))
    apis, left_out, table, points = [], [], [], []
    missing: list[tuple[str, tuple[str, ...]]] = []
    for api in sorted(groups):
        if equal is None:
            per_tool = [metric_values(groups[api].get(t, []), key) for t in tools]
        else:
            at = equal[api].at
            per_tool = [at[t].values(key) if t in at else [] for t in tools]
        if all(per_tool):
            apis.append(api)
            table.append([stats.median(v) for v in per_tool])
            if equal is not None:
                points.append(equal[api].point or 0)
        else:
            left_out.append(api)
            missing.append((api, tuple(t for t, v in zip(tools, per_tool, strict=True) if not v)))
    basis = BUDGET_END if equal is None else EQUAL_REQUESTS
    if len(tools) < 2 or not table:
        return Ranking(
            key,
            label,
            tools,
            tuple(apis),
            tuple(left_out),
            None,
            basis=basis,
            points=tuple(points),
            missing=tuple(missing),
        )
    result = stats.friedman(table)
    p = stats.nemenyi(table)
    cd = stats.critical_difference(len(tools), result.blocks, ALPHA)
    return Ranking(
        key,
        label,
        tools,
        tuple(apis),
        tuple(left_out),
        result,
        tuple(map(tuple, p)),
        cd,
        basis,
        tuple(points),
        tuple(missing),
    )


# --- plots ----------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def coverage_matrix(runs: Sequence[Run], kind_index: int, grid: Sequence[float]) -> Any:
    """Runs x grid times: each run's coverage at t is its last sample at or before t (coverage is
    cumulative); NaN before a run's first sample."""
    import numpy as np

    times = np.asarray(grid, dtype=float)
    matrix = np.full((len(runs), len(times)), np.nan)
    for i, r in enumerate(runs):
        known = r.series[~np.isnan(r.series[:, kind_index])]
        if not len(known):
            continue
        order = np.lexsort((known[:, kind_index], known[:, 0]))  # by time, then value (as sorted pairs)
        ts = known[order, 0]
        vs = known[order, kind_index]
        pos = np.searchsorted(ts, times, side="right") - 1
        matrix[i] = np.where(pos >= 0, vs[np.clip(pos, 0, None)], np.nan)
    return matrix


def median_band(matrix: Any, grid: Sequence[float]) -> tuple[Any, Any, Any, Any]:
    """(times, Q1, median, Q3) over the runs at each grid time some run has a value (linear
    interpolation between order statistics, as :mod:`remote_runner.analysis.stats`)."""
    import numpy as np

    keep = ~np.all(np.isnan(matrix), axis=0)
    times = np.asarray(grid, dtype=float)[keep]
    if not keep.any():
        return times, times, times, times
    sub = matrix[:, keep]
    # np.percentile over the columns without NaN (most of them: every run has started) is one
    # vectorised call; nanpercentile goes column by column. Same order statistics, same numbers.
    whole = ~np.isnan(sub).any(axis=0)
    q = np.empty((3, sub.shape[1]))
    if whole.any():
        q[:, whole] = np.percentile(sub[:, whole], [25, 50, 75], axis=0)
    if not whole.all():
        q[:, ~whole] = np.nanpercentile(sub[:, ~whole], [25, 50, 75], axis=0)
    return times, q[0], q[1], q[2]


def plot_coverage(api: str, by_tool: dict[str, list[Run]], out_dir: Path) -> str | None:
    """coverage-<api>.png: line/branch/method coverage over time, median line and IQR band per tool."""
    with_series = {t: [r for r in rs if len(r.series)] for t, rs in by_tool.items()}
    with_series = {t: rs for t, rs in with_series.items() if rs}
    if not with_series:
        return None
    end = max(float(r.series[:, 0].max()) for rs in with_series.values() for r in rs)
    end = max(end, 1.0)
    grid = [end * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    for ax, (kind, idx) in zip(axes, COVERAGE_KINDS, strict=True):
        for tool, rs in sorted(with_series.items()):
            times, q1, med, q3 = median_band(coverage_matrix(rs, idx, grid), grid)
            if not len(times):
                continue
            (line,) = ax.plot(times / 60, 100 * med, label=f"{tool} (n={len(rs)})")
            ax.fill_between(times / 60, 100 * q1, 100 * q3, alpha=0.25, color=line.get_color(), linewidth=0)
        ax.set_title(f"{api}: {kind} coverage")
        ax.set_xlabel("minutes")
        ax.set_ylabel("% covered")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.91, wspace=0.25)  # not tight_layout: slow
    name = f"coverage-{_safe(api)}.png"
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name


def no_coverage_plot_reason(api: str, runs: Sequence[Run]) -> str:
    """Why an API has no coverage-<api>.png: the plot, like the main analysis, draws completed runs
    only (a run that failed, or whose recording or sampling broke, is in no analysis), so an API none
    of whose runs completed has none, even where its runs sampled coverage (pure)."""
    completed = [r for r in runs if r.completed]
    sampled = [r for r in runs if len(r.series)]
    if completed:
        return f"No plot: none of the {len(completed)} completed runs of {api} has coverage samples."
    if not sampled:
        return f"No plot: no run of {api} has coverage samples."
    return (
        f"No plot: it draws completed runs only, as the main analysis does, and no run of {api} "
        f"completed; {len(sampled)} of its {len(runs)} runs have coverage samples (see 'Runs left out "
        "of the statistics' for why each is left out)."
    )


def plot_operations(groups: dict[str, dict[str, list[Run]]], out_dir: Path) -> str | None:
    """operations-covered.png: median operations covered per API and tool, IQR as whiskers."""
    apis = sorted(
        a
        for a, by_tool in groups.items()
        if any(metric_values(rs, "operations_covered") for rs in by_tool.values())
    )
    if not apis:
        return None
    tools = sorted({t for a in apis for t in groups[a]})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(apis) * max(1, len(tools)) ** 0.5 + 2), 4))
    width = 0.8 / max(1, len(tools))
    for k, tool in enumerate(tools):
        xs, heights, err_lo, err_hi = [], [], [], []
        for i, api in enumerate(apis):
            vals = metric_values(groups[api].get(tool, []), "operations_covered")
            if not vals:
                continue
            med = stats.median(vals)
            q1, q3 = stats.iqr(vals)
            xs.append(i + (k - (len(tools) - 1) / 2) * width)
            heights.append(med)
            err_lo.append(med - q1)
            err_hi.append(q3 - med)
        if xs:
            ax.bar(xs, heights, width=width, label=tool, yerr=[err_lo, err_hi], capsize=3)
    ax.set_xticks(range(len(apis)))
    ax.set_xticklabels(apis, rotation=30, ha="right")
    ax.set_ylabel("operations covered (median, IQR)")
    ax.set_title("Operations covered (verified runs)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.3, top=0.9)  # not tight_layout: slow
    name = "operations-covered.png"
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name


def cd_name(ranking: Ranking) -> str:
    """cd-<metric>.png at the budget's end, cd-<metric>-equal-requests.png at equal requests."""
    suffix = "" if ranking.basis == BUDGET_END else f"-{ranking.basis}"
    return f"cd-{_safe(ranking.metric)}{suffix}.png"


def plot_critical_difference(ranking: Ranking, out_dir: Path) -> str | None:
    """cd-<metric>.png: Demsar's critical-difference diagram: the tools on the mean-rank axis (1 =
    best, left), a bar as long as the critical difference, and thick lines joining tools whose mean
    ranks differ by less than it (not significantly different by Nemenyi at ALPHA)."""
    if ranking.result is None or ranking.critical_difference is None:
        return None
    ranks = ranking.result.mean_ranks
    k = len(ranks)
    order = sorted(range(k), key=lambda i: ranks[i])
    cd = ranking.critical_difference
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.32 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k + 1.5), 2.2)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.25, color="black", linewidth=1)
        ax.text(r, 0.45, str(r), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.6, 1, 1 + cd, color="tab:red", linewidth=2)
    ax.text(1 + cd / 2, 1.75, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9, color="tab:red")
    for pos, i in enumerate(order):
        y = -(pos + 1)
        ax.vlines(ranks[i], y, 0, color="grey", linewidth=0.8)
        ax.text(ranks[i] + 0.03, y, f"{ranking.tools[i]} ({ranks[i]:.2f})", va="center", fontsize=9)
    # cliques: maximal runs of consecutive tools (by rank) within the critical difference
    cliques: list[tuple[int, int]] = []
    for a in range(k):
        b = a
        while b + 1 < k and ranks[order[b + 1]] - ranks[order[a]] < cd:
            b += 1
        if b > a and not any(c[0] <= a and b <= c[1] for c in cliques):
            cliques.append((a, b))
    for n, (a, b) in enumerate(cliques):
        ax.hlines(-0.35 - 0.2 * n, ranks[order[a]] - 0.03, ranks[order[b]] + 0.03, color="black", linewidth=4)
    marked = (
        "" if ranking.result.significant(ALPHA) else "\nFriedman not significant: no evidence of a difference"
    )
    ax.set_title(
        f"{ranking.label} {BASIS_TEXT[ranking.basis]}: mean ranks over {ranking.result.blocks} APIs "
        f"(Nemenyi, alpha={ALPHA:g}){marked}",
        fontsize=10,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.85)
    name = cd_name(ranking)
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name


# --- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The report's protocol header (plan.json and the runs' metadata.json): the preset and what the
    batch overrode, the seed, and per tool its version string(s) and the model files it mounted."""

    preset: str | None = None
    title: str | None = None
    overridden: dict[str, Any] = field(default_factory=dict)
    shuffle_seed: int | None = None
    seed: int | None = None
    versions: dict[str, list[str]] = field(default_factory=dict)  # tool -> distinct "text (source)"
    models: dict[str, list[str]] = field(default_factory=dict)  # tool -> distinct "name sha256[:12] size"
    notes: tuple[str, ...] = ()
    version_notes: tuple[str, ...] = ()


def read_header(batch_dir: Path) -> Header:
    """The header's facts from plan.json's ``protocol`` block and each run's ``provenance``."""
    plan = read_json(batch_dir / "plan.json")
    protocol = plan.get("protocol") or {}
    versions: dict[str, list[str]] = {}
    models: dict[str, list[str]] = {}
    for run_dir in find_run_dirs(batch_dir):
        meta = read_json(run_dir / "metadata.json")
        prov = meta.get("provenance") or {}
        tool = str(meta.get("tool") or run_identity(run_dir)[1])
        version = prov.get("tool_version") or {}
        if version.get("text"):
            line = f"{version['text']} ({version.get('source')})"
            if line not in versions.setdefault(tool, []):
                versions[tool].append(line)
        for model in prov.get("models") or []:
            line = f"{model.get('name')} sha256 {str(model.get('sha256'))[:12]} ({model.get('size')} bytes)"
            if line not in models.setdefault(tool, []):
                models[tool].append(line)
    return Header(
        preset=protocol.get("preset"),
        title=protocol.get("title"),
        overridden=dict(protocol.get("overridden") or {}),
        shuffle_seed=protocol.get("shuffle_seed"),
        seed=protocol.get("seed"),
        versions=versions,
        models={t: m for t, m in models.items() if m},
        notes=tuple(protocol.get("notes") or ()),
        version_notes=tuple(
            f"{v.get('tool')}: ours {v.get('ours')}, the paper's {v.get('paper')}: {v.get('why')}"
            for v in protocol.get("versions") or []
            if isinstance(v, dict)
        ),
    )


def _setting_text(key: str, value: Any) -> str:
    """A setting's value as a reader writes it: sizes in Docker's notation, seconds as numbers."""
    if key == "memory_per_container" and isinstance(value, int) and not isinstance(value, bool):
        return format_size(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _add_header(doc: Doc, header: Header, runs: Sequence[Run]) -> None:
    doc.heading(2, "Protocol")
    if header.preset:
        over = (
            "; overridden: "
            + ", ".join(
                f"{k} {_setting_text(k, v.get('preset'))} -> {_setting_text(k, v.get('used'))}"
                for k, v in sorted(header.overridden.items())
            )
            if header.overridden
            else "; nothing overridden"
        )
        doc.para(f"Preset {header.preset}: {header.title}{over}.")
    else:
        doc.para("No preset: the runner's defaults and this batch's own settings (plan.json).")
    order = (
        f"run order shuffled with seed {header.shuffle_seed}"
        if header.shuffle_seed is not None
        else "run order fixed (repetition, API, tool)"
    )
    doc.para(f"Seed {header.seed if header.seed is not None else 'none'}; {order}.")
    tools = sorted({r.tool for r in runs})
    doc.table(
        ["tool", "n (completed)", "n (fully verified)", "runs planned", "version", "models"],
        [
            [
                t,
                str(sum(1 for r in runs if r.tool == t and r.completed)),
                str(sum(1 for r in runs if r.tool == t and r.completed and r.verified)),
                str(sum(1 for r in runs if r.tool == t)),
                "; ".join(header.versions.get(t, [])) or "unknown",
                "; ".join(header.models.get(t, [])) or "none",
            ]
            for t in tools
        ],
    )
    for line in (*header.version_notes, *header.notes):
        doc.para(line)


#: the two analyses: every completed run (the main one), and the fully verified runs only
MAIN, VERIFIED_ONLY = "main", "verified-only"
ANALYSIS_TEXT = {MAIN: "every completed run", VERIFIED_ONLY: "fully verified runs only"}


def analysis_groups(runs: Sequence[Run], analysis: str) -> dict[str, dict[str, list[Run]]]:
    """api -> tool -> the runs of ``analysis`` (every tool of the API is present, maybe empty)."""
    groups: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault(r.api, {}).setdefault(r.tool, [])
        if r.completed and (analysis == MAIN or r.verified):
            groups[r.api][r.tool].append(r)
    return groups


def build_document(
    batch_name: str,
    runs: Sequence[Run],
    out_dir: Path,
    *,
    plots: bool = True,
    header: Header | None = None,
) -> Doc:
    doc = Doc()
    completed = [r for r in runs if r.completed]
    verified = [r for r in completed if r.verified]
    failed = [r for r in runs if r.failed]
    unfinished = [r for r in runs if r.status.lower() in UNFINISHED_STATUSES]
    budgets = sorted({r.budget_seconds for r in runs if r.budget_seconds is not None})
    doc.heading(1, f"Report: {batch_name}")
    doc.para(
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC. {len(runs)} runs: "
        f"{len(completed)} completed, of which {len(verified)} fully verified and "
        f"{len(completed) - len(verified)} kept with a flag; {len(failed)} failed"
        + (f", {len(unfinished)} not finished. " if unfinished else ". ")
        + "The main analysis uses every completed run (a slow tool, one that stopped early or "
        "restarted is a result, flagged below); beside it, the same analysis on fully verified runs "
        "only. A run whose recording or sampling broke was re-run; one that still failed is listed "
        "with its reason. Cells show median [Q1, Q3], n per tool. p: two-sided Mann-Whitney U, "
        "Holm-corrected within each (API, metric) family of tool pairs (the uncorrected p beside it); "
        "A12: Vargha-Delaney effect size of the first tool over the second (0.5 = no difference) with "
        "its magnitude (negligible, small, medium, large). The primary fault count, 'Confirmed unique "
        "faults', counts a run's 5xx requests that a replay on a fresh service answered 5xx every time, "
        "grouped by the service's own stack trace (empty until `python -m remote_runner faults` ran). "
        "Beside it four counts, each labelled with its "
        "source: 'Unique failures (ours)' groups 5xx bodies per operation and status; 'Unique "
        "failures (RESTgym)' pools a run's 5xx bodies into RESTgym's buckets; 'Operations with a 500 "
        "(ARAT-RL)' counts operations that answered 500; 'Unique 500/502 messages per path prefix "
        "(LlamaRestTest)' is collect.py's count (docs/results.md says which to use when)."
        + (f" Budget per run: {', '.join(f'{b:g}' for b in budgets)} s." if budgets else "")
    )
    _add_header(doc, header or Header(), runs)
    groups = analysis_groups(runs, MAIN)
    strict = analysis_groups(runs, VERIFIED_ONLY)
    equal = {api: EqualRequests.of(by_tool) for api, by_tool in groups.items()}
    for api in sorted(groups):
        by_tool, by_tool_v = groups[api], strict[api]
        tools = sorted(by_tool)
        doc.heading(2, f"API: {api}")
        doc.table(
            ["tool", "completed runs (n)", "fully verified (n)", "all runs"],
            [
                [
                    t,
                    str(len(by_tool[t])),
                    str(len(by_tool_v[t])),
                    str(sum(1 for r in runs if r.api == api and r.tool == t)),
                ]
                for t in tools
            ],
        )
        doc.heading(3, "Metrics per tool")
        doc.table(
            [
                "metric",
                *[
                    h
                    for t in tools
                    for h in (
                        f"{t}: all completed (n={len(by_tool[t])})",
                        f"{t}: verified only (n={len(by_tool_v[t])})",
                    )
                ],
            ],
            [
                [
                    label,
                    *[
                        c
                        for t in tools
                        for c in (
                            describe(metric_values(by_tool[t], key), kind),
                            describe(metric_values(by_tool_v[t], key), kind),
                        )
                    ],
                ]
                for key, label, kind in METRICS
            ],
        )
        pairs = list(itertools.combinations(tools, 2))
        if pairs:
            for analysis, source in ((MAIN, by_tool), (VERIFIED_ONLY, by_tool_v)):
                doc.heading(
                    3,
                    "Tool comparisons (p Holm-corrected, A12)"
                    + ("" if analysis == MAIN else ": fully verified runs only"),
                )
                doc.table(
                    ["metric", *[f"{a} vs {b}" for a, b in pairs]],
                    [
                        [label, *family_cells({t: metric_values(source[t], key) for t in tools}, pairs)]
                        for key, label, _ in METRICS
                    ],
                )
        eq = equal[api]
        smallest, point = eq.smallest, eq.point
        doc.heading(3, "At the smallest request count")
        if point is None:
            doc.para(
                "No comparison at equal requests: "
                + (
                    "no completed run."
                    if smallest is None
                    else f"the smallest completed run sent {smallest} requests, fewer than one row of "
                    f"the cumulative series ({cumulative.STEP})."
                )
            )
        else:
            doc.para(
                f"Every tool at {point} requests: the smallest completed run of {api} sent {smallest} "
                f"requests, rounded down to a row of the cumulative series (every {cumulative.STEP}). "
                "Coverage is the last sample at or before that request. Areas: sum of the series' "
                f"rows up to {point} requests (RESTgym's area under the curve)."
            )
            at = eq.at
            doc.table(
                ["metric", *[f"{t} (n={len(at[t].values('status_2xx'))})" for t in tools]],
                [
                    [label, *[describe(at[t].values(key), kind) for t in tools]]
                    for key, label, kind in SERIES_METRICS
                ],
            )
            doc.table(
                ["area under the curve", *tools],
                [
                    [label, *[describe(at[t].area_values(key), "num") for t in tools]]
                    for key, label, _kind in SERIES_METRICS
                ],
            )
            if pairs:
                doc.table(
                    ["metric (at equal requests)", *[f"{a} vs {b}" for a, b in pairs]],
                    [
                        [label, *family_cells({t: at[t].values(key) for t in tools}, pairs)]
                        for key, label, _kind in SERIES_METRICS
                    ],
                )
                doc.table(
                    ["area under the curve", *[f"{a} vs {b}" for a, b in pairs]],
                    [
                        [label, *family_cells({t: at[t].area_values(key) for t in tools}, pairs)]
                        for key, label, _kind in SERIES_METRICS
                    ],
                )
        if plots:
            name = plot_coverage(api, by_tool, out_dir)
            doc.heading(3, "Coverage over time")
            if name:
                doc.image(name, f"{api} coverage over time")
            else:
                doc.para(no_coverage_plot_reason(api, [r for r in runs if r.api == api]))
    add_rankings(doc, groups, out_dir, plots=plots, equal=equal)
    add_rankings(doc, strict, out_dir, plots=False, analysis=VERIFIED_ONLY)
    if plots:
        name = plot_operations(groups, out_dir)
        if name:
            doc.heading(2, "Operations covered")
            doc.image(name, "operations covered per API and tool")
    add_confirmed_faults(doc, runs, out_dir, plots=plots)
    doc.heading(2, "Runs left out of the statistics")
    excluded = [r for r in runs if not r.completed]
    if excluded:
        doc.table(
            ["api", "tool", "run", "status", "why", "folder"],
            [
                [
                    r.api,
                    r.tool,
                    str(r.run),
                    r.status,
                    "; ".join(filter(None, (r.reason, *r.infrastructure)))
                    or ("failed" if r.failed else "not completed"),
                    r.path,
                ]
                for r in excluded
            ],
        )
    elif not runs:
        doc.para("This batch has no runs yet: nothing to report.")
    else:
        doc.para("None: every run completed.")
    doc.heading(2, "Runs kept with a flag")
    flagged = [r for r in completed if not r.verified]
    if flagged:
        doc.para(
            "In the main analysis, left out of the fully verified one: each failed a check of the "
            "tool's own behaviour (requests per minute, request span, restarts, coverage samples per "
            "minute)."
        )
        doc.table(
            ["api", "tool", "run", "flags", "folder"],
            [
                [r.api, r.tool, str(r.run), "; ".join(r.flags) or r.reason or "not verified", r.path]
                for r in flagged
            ],
        )
    else:
        doc.para("None: every completed run is fully verified.")
    restarted = [r for r in runs if r.tool_restarts]
    if restarted:
        doc.heading(2, "Tool restarts")
        doc.table(
            ["api", "tool", "run", "restarts", "crash reasons"],
            [
                [r.api, r.tool, str(r.run), str(r.tool_restarts), "; ".join(dict.fromkeys(r.crash_reasons))]
                for r in restarted
            ],
        )
    return doc


def add_confirmed_faults(doc: Doc, runs: Sequence[Run], out_dir: Path, *, plots: bool = True) -> None:
    """The "Confirmed faults" section (remote_runner/analysis/fault_report.py), when any run was replayed."""
    replayed = fault_report.replay_rows(runs)
    doc.heading(2, "Confirmed faults (replayed)")
    if not replayed:
        doc.para(
            "No run of this batch was replayed: run `python -m remote_runner faults BATCH`, then rebuild "
            "the report, for the confirmed-fault count."
        )
        return
    doc.para(
        "Each distinct 5xx request of a run was sent again to fresh containers of the same API image, "
        "k times alone and, unless that gave a 5xx every time, k times after the run's earlier "
        "successful writes of the same session: a 5xx every time (one way or the other) is confirmed, "
        "some of the time flaky, never not reproduced. A confirmed fault's key is the exception type "
        "and top three frames of the API's own classes from the stack trace the service logged while "
        "answering; without a trace, RESTgym's bucket of the response body (named so). Confirmed "
        "unique faults per run = distinct keys (docs/results.md, Confirmed faults)."
    )
    doc.heading(3, "Replay per run")
    doc.table(
        [
            "api",
            "tool",
            "run",
            "distinct 5xx requests",
            "confirmed",
            "flaky",
            "not reproduced",
            "skipped or failed",
            "unique confirmed faults",
            "container",
            "replay seconds",
            "complete",
        ],
        replayed,
    )
    faults_found = fault_report.collect(runs)
    tools = sorted({r.tool for r in runs if r.completed})
    doc.heading(3, "Faults")
    if not faults_found:
        doc.para("No confirmed fault in the completed runs.")
        return
    doc.table(
        ["api", "key", "key from", "first triggering request", "found by", "first found (per tool)"],
        fault_report.fault_rows(faults_found),
    )
    if len(tools) > 1:
        doc.heading(3, "Faults found by only one tool")
        only = fault_report.only_one_tool(faults_found, tools)
        if only:
            doc.table(["tool", "api", "key", "first found"], only)
        else:
            doc.para("None: every confirmed fault was found by more than one tool.")
    if plots:
        name = fault_report.plot_overlap(faults_found, tools, out_dir)
        if name:
            doc.image(name, "confirmed faults by the tools that found them")


def add_rankings(
    doc: Doc,
    groups: dict[str, dict[str, list[Run]]],
    out_dir: Path,
    *,
    plots: bool = True,
    equal: Mapping[str, EqualRequests] | None = None,
    analysis: str = MAIN,
) -> None:
    """The cross-API section: per ranked metric, mean ranks, Friedman, Nemenyi, the CD diagram, at
    the budget's end and (given ``equal``) again at each API's smallest request count."""
    tools = sorted({t for by_tool in groups.values() for t in by_tool})
    doc.heading(2, "Ranks across APIs" + ("" if analysis == MAIN else ": fully verified runs only"))
    if len(tools) < 2:
        doc.para("Ranking needs two or more tools; this batch has " + (tools[0] if tools else "none") + ".")
        return
    doc.para(
        f"On {ANALYSIS_TEXT[analysis]}. Per metric, each API ranks the tools by their median (1 = best, "
        "i.e. highest; ties share the average rank)"
        + (
            ", twice: at the budget's end, then at equal requests (each API at its smallest request "
            "count, the row of its 'At the smallest request count' section, as RESTgym compares tools)"
            if equal is not None
            else ", at the budget's end"
        )
        + ". Friedman test over the APIs, Nemenyi post-hoc p-values, critical difference (CD) at "
        f"alpha = {ALPHA:g} (Demsar 2006, as in FuzzBench's reports); where Friedman is not "
        "significant, the post-hoc results are marked and are no evidence of a difference. An API goes "
        "in when every tool has a value there; every API left out is named with the tool that lacks one."
    )
    bases: list[Mapping[str, EqualRequests] | None] = [None] if equal is None else [None, equal]
    for basis in bases:
        if basis is not None:
            doc.heading(3, "At equal requests")
            doc.para(
                "The same ranks on each tool's values at its API's smallest request count (the "
                "fewest requests of any completed run of that API, rounded down to a row of the "
                f"cumulative series, every {cumulative.STEP}); an API whose smallest completed run sent "
                f"fewer than {cumulative.STEP} requests has no such values and is left out."
            )
        for key, label in RANK_METRICS:
            _add_ranking(doc, rank_tools(groups, key, label, basis), out_dir, plots=plots, analysis=analysis)


def _apis(n: int) -> str:
    return f"{n} API" if n == 1 else f"{n} APIs"


def _add_ranking(doc: Doc, ranking: Ranking, out_dir: Path, *, plots: bool, analysis: str = MAIN) -> None:
    at_end = ranking.basis == BUDGET_END
    doc.heading(
        3 if at_end else 4,
        (f"Ranks: {ranking.label}" if at_end else f"Ranks at equal requests: {ranking.label}")
        + ("" if analysis == MAIN else " (fully verified runs only)"),
    )
    if not ranking.apis:
        went_in = "No API went in."
    elif at_end:
        went_in = f"{_apis(len(ranking.apis))} went in: {', '.join(ranking.apis)}."
    else:
        went_in = (
            f"{_apis(len(ranking.apis))} went in, each at its smallest request count: "
            + ", ".join(
                f"{api} at {point} requests" for api, point in zip(ranking.apis, ranking.points, strict=True)
            )
            + "."
        )
    if ranking.left_out:
        why = "a tool has no value" if at_end else "a tool has no value at equal requests"
        went_in += f" Left out ({why}): {', '.join(ranking.left_out)}."
        if ranking.missing:
            went_in += " Missing: " + "; ".join(f"{api}: {', '.join(t)}" for api, t in ranking.missing) + "."
    if ranking.result is None:
        doc.para(went_in)
        return
    res = ranking.result
    significant = res.significant(ALPHA)
    doc.para(
        f"{went_in} Friedman chi-square = {res.statistic:.3f}, df = {res.treatments - 1}, "
        f"p = {_fmt_p(res.p_value)}; CD = {ranking.critical_difference:.3f}."
        + (" With fewer than 5 APIs these tests have little power." if res.blocks < 5 else "")
        + (
            ""
            if significant
            else f" Friedman is not significant at alpha = {ALPHA:g}: the Nemenyi p-values and the "
            "CD diagram below are marked (not significant) and show no evidence of a difference."
        )
    )
    order = sorted(range(len(ranking.tools)), key=lambda i: res.mean_ranks[i])
    mark = "" if significant else " (Friedman not significant)"
    doc.table(
        ["tool", "mean rank", *[f"Nemenyi p vs {ranking.tools[j]}{mark}" for j in order]],
        [
            [
                ranking.tools[i],
                f"{res.mean_ranks[i]:.2f}",
                *["-" if i == j else _fmt_p(ranking.nemenyi[i][j]) for j in order],
            ]
            for i in order
        ],
    )
    if plots:
        name = plot_critical_difference(ranking, out_dir)
        if name:
            doc.image(name, f"critical-difference diagram: {ranking.label} {BASIS_TEXT[ranking.basis]}{mark}")


def build_report(batch_dir: Path, out_dir: Path | None = None) -> Path:
    """Write report.md, report.html and the PNGs into ``out_dir`` (default: the batch folder); returns
    the path of report.md."""
    batch_dir = Path(batch_dir).resolve()  # "." must still give the batch's name
    out = Path(out_dir) if out_dir is not None else batch_dir
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(batch_dir)
    doc = build_document(batch_dir.name, runs, out, header=read_header(batch_dir))
    md = out / "report.md"
    md.write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(f"Report: {batch_dir.name}"), encoding="utf-8")
    return md


CONSOLE_METRICS = ("line_coverage", "branch_coverage", "operations_covered", "operations_5xx", "requests")


def console_summary(runs: Sequence[Run]) -> str:
    """A plain-text table for the end of ``run``: per API x tool, how many runs finished and were
    verified, and the median [Q1, Q3] of the headline metrics over the verified runs."""
    labels = {key: label for key, label, _ in METRICS}
    kinds = {key: kind for key, _, kind in METRICS}
    header = ["api", "tool", "runs", "verified", *(labels[k] for k in CONSOLE_METRICS)]
    rows: list[list[str]] = []
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.api, r.tool), []).append(r)
    for (api, tool), group in sorted(groups.items()):
        verified = [r for r in group if r.verified]
        rows.append(
            [
                api,
                tool,
                str(len(group)),
                str(len(verified)),
                *(describe(metric_values(verified, k), kinds[k]) for k in CONSOLE_METRICS),
            ]
        )
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in runs:
        if not r.verified:
            why = r.reason or "not verified"
            lines.append(f"not in the statistics: {r.api}/{r.tool}/run-{r.run}: {r.status}: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m remote_runner report BATCH_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m remote_runner report",
        description="Write report.md/report.html with statistics and plots for a batch folder.",
    )
    parser.add_argument("batch_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the batch folder)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.batch_dir.is_dir():
        print(f"report: {args.batch_dir} is not a directory", file=sys.stderr)
        return 2
    runs = load_runs(args.batch_dir)
    if not runs:
        print(
            f"report: {args.batch_dir} holds no runs (no run folders and no journal entries): "
            "nothing to report; is this a batch folder?",
            file=sys.stderr,
        )
        return 1
    md = build_report(args.batch_dir, args.out)
    for r in runs:
        if r.reason.startswith("damaged"):
            print(f"report: {r.path}: {r.reason}", file=sys.stderr)
    print(f"wrote {md} and {md.with_suffix('.html')}")
    return 0
