"""The report's numbers: the runs it reads (:class:`Run`, from each run's ``summary.json`` and
``cumulative.csv``), the metrics it tabulates (:data:`METRICS`), and the statistics its tables show
(medians and IQRs, pairwise tests, values at equal requests, the rankings across APIs). Pure functions
over the batch folder's files; the document (:mod:`remote_runner.analysis.report.document`) lays them
out and the figures (:mod:`remote_runner.analysis.report.figures`) draw them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


def fmt_p(p: float) -> str:
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
    return f"p={fmt_p(pair.p_holm)} (uncorrected {fmt_p(pair.p_raw)}), A12={pair.a12:.2f} {pair.magnitude}"


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
