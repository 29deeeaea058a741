"""The batch report: ``python -m remote_runner report BATCH_DIR [--out DIR]``.

Reads only the batch folder (each run's ``summary.json``; ``metadata.json`` for failure reasons), so
it runs on a laptop on a downloaded batch. Writes ``report.md`` and ``report.html`` (same content; the
HTML is self-contained apart from the PNG files next to it) and the PNG plots:

- per API, per tool: median and interquartile range of every metric, over verified runs, with n;
- per API, per pair of tools: two-sided Mann-Whitney U p-value and Vargha-Delaney A12 per metric
  (:mod:`remote_runner.stats`);
- per API: coverage over time (line, branch, method), median line and IQR band per tool;
- a bar chart of operations covered (median, IQR whiskers) per API and tool;
- every failed or unverified run, with its reason; these runs are left out of the statistics.

The document is built once as a list of blocks and rendered twice (Markdown, HTML).
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from remote_runner import stats
from remote_runner.results import (
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
    ("unique_failures", "Unique failures", "num"),
    ("requests", "Requests", "num"),
    ("status_2xx", "2xx responses", "num"),
    ("status_4xx", "4xx responses", "num"),
    ("status_5xx", "5xx responses", "num"),
    ("status_401", "401 responses", "num"),
    ("status_403", "403 responses", "num"),
    ("seconds_to_first_2xx", "Seconds to first 2xx", "num"),
    ("requests_to_first_2xx", "Requests to first 2xx", "num"),
)
COVERAGE_KINDS = (("line", 1), ("branch", 2), ("method", 3))  # index into series rows
FAILED_STATUSES = frozenset({"failed", "interrupted", "error", "aborted", "cancelled", "timeout", "oom"})
UNFINISHED_STATUSES = frozenset({"pending", "running"})
GRID_POINTS = 200


@dataclass(frozen=True)
class Run:
    api: str
    tool: str
    run: int | None
    status: str
    verified: bool
    reason: str
    values: dict[str, float | None]
    series: tuple[tuple[float, float | None, float | None, float | None], ...]
    budget_seconds: float | None
    path: str

    @property
    def failed(self) -> bool:
        return self.status.lower() in FAILED_STATUSES or self.reason == "no summary.json"


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
        series = tuple(
            (float(p[0]), _num(p[1]), _num(p[2]), _num(p[3]))
            for p in series_raw
            if isinstance(p, list) and len(p) >= 4 and _num(p[0]) is not None
        )
        runs.append(
            Run(
                api=api,
                tool=tool,
                run=n,
                status=status,
                verified=bool(row.get("verified")) and status.lower() not in FAILED_STATUSES,
                reason=reason,
                values={key: _num(row.get(key)) for key, _, _ in METRICS},
                series=series,
                budget_seconds=_num(summary.get("budget_seconds")) if summary else None,
                path=str(run_dir.relative_to(batch_dir)),
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
        points = sorted((p[0], v) for p in r.series if (v := p[kind_index]) is not None)
        if not points:
            continue
        ts = np.array([t for t, _ in points])
        vs = np.array([v for _, v in points])
        pos = np.searchsorted(ts, times, side="right") - 1
        matrix[i] = np.where(pos >= 0, vs[np.clip(pos, 0, None)], np.nan)
    return matrix


def median_band(matrix: Any, grid: Sequence[float]) -> tuple[Any, Any, Any, Any]:
    """(times, Q1, median, Q3) over the runs at each grid time some run has a value (linear
    interpolation between order statistics, as :mod:`remote_runner.stats`)."""
    import numpy as np

    keep = ~np.all(np.isnan(matrix), axis=0)
    times = np.asarray(grid, dtype=float)[keep]
    if not keep.any():
        return times, times, times, times
    q1, med, q3 = np.nanpercentile(matrix[:, keep], [25, 50, 75], axis=0)
    return times, q1, med, q3


def plot_coverage(api: str, by_tool: dict[str, list[Run]], out_dir: Path) -> str | None:
    """coverage-<api>.png: line/branch/method coverage over time, median line and IQR band per tool."""
    with_series = {t: [r for r in rs if r.series] for t, rs in by_tool.items()}
    with_series = {t: rs for t, rs in with_series.items() if rs}
    if not with_series:
        return None
    end = max(p[0] for rs in with_series.values() for r in rs for p in r.series)
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
    fig.tight_layout()
    name = f"coverage-{_safe(api)}.png"
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name


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
    fig.tight_layout()
    name = "operations-covered.png"
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name


# --- the report -----------------------------------------------------------------------------------


def build_document(batch_name: str, runs: Sequence[Run], out_dir: Path, *, plots: bool = True) -> Doc:
    doc = Doc()
    verified = [r for r in runs if r.verified]
    failed = [r for r in runs if r.failed]
    unfinished = [r for r in runs if r.status.lower() in UNFINISHED_STATUSES]
    unverified = [r for r in runs if not r.verified and not r.failed and r not in unfinished]
    budgets = sorted({r.budget_seconds for r in runs if r.budget_seconds is not None})
    doc.heading(1, f"Report: {batch_name}")
    doc.para(
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC. {len(runs)} runs: "
        f"{len(verified)} verified, {len(unverified)} unverified, {len(failed)} failed"
        + (f", {len(unfinished)} not finished. " if unfinished else ". ")
        + "Statistics use verified runs only; n is given per tool. Cells show median [Q1, Q3]. "
        "p: two-sided Mann-Whitney U; A12: Vargha-Delaney effect size of the first tool over the second "
        "(0.5 = no difference, > 0.5 = first tool higher)."
        + (f" Budget per run: {', '.join(f'{b:g}' for b in budgets)} s." if budgets else "")
    )
    groups: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault(r.api, {}).setdefault(r.tool, [])
        if r.verified:
            groups[r.api][r.tool].append(r)
    for api in sorted(groups):
        by_tool = groups[api]
        tools = sorted(by_tool)
        doc.heading(2, f"API: {api}")
        doc.table(
            ["tool", "verified runs (n)", "all runs"],
            [
                [t, str(len(by_tool[t])), str(sum(1 for r in runs if r.api == api and r.tool == t))]
                for t in tools
            ],
        )
        doc.heading(3, "Metrics per tool")
        doc.table(
            ["metric", *[f"{t} (n={len(by_tool[t])})" for t in tools]],
            [
                [label, *[describe(metric_values(by_tool[t], key), kind) for t in tools]]
                for key, label, kind in METRICS
            ],
        )
        pairs = list(itertools.combinations(tools, 2))
        if pairs:
            doc.heading(3, "Tool comparisons (p-value, A12)")
            rows = []
            for key, label, _ in METRICS:
                cells = []
                for a, b in pairs:
                    res = pairwise(by_tool[a], by_tool[b], key)
                    cells.append("-" if res is None else f"p={_fmt_p(res[0])}, A12={res[1]:.2f}")
                rows.append([label, *cells])
            doc.table(["metric", *[f"{a} vs {b}" for a, b in pairs]], rows)
        if plots:
            name = plot_coverage(api, by_tool, out_dir)
            if name:
                doc.heading(3, "Coverage over time")
                doc.image(name, f"{api} coverage over time")
    if plots:
        name = plot_operations(groups, out_dir)
        if name:
            doc.heading(2, "Operations covered")
            doc.image(name, "operations covered per API and tool")
    doc.heading(2, "Runs left out of the statistics")
    excluded = [r for r in runs if not r.verified]
    if excluded:
        doc.table(
            ["api", "tool", "run", "status", "why", "folder"],
            [
                [
                    r.api,
                    r.tool,
                    str(r.run),
                    r.status,
                    r.reason or ("failed" if r.failed else "not verified"),
                    r.path,
                ]
                for r in excluded
            ],
        )
    elif not runs:
        doc.para("This batch has no runs yet: nothing to report.")
    else:
        doc.para("None: every run is verified.")
    return doc


def build_report(batch_dir: Path, out_dir: Path | None = None) -> Path:
    """Write report.md, report.html and the PNGs into ``out_dir`` (default: the batch folder); returns
    the path of report.md."""
    batch_dir = Path(batch_dir).resolve()  # "." must still give the batch's name
    out = Path(out_dir) if out_dir is not None else batch_dir
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(batch_dir)
    doc = build_document(batch_dir.name, runs, out)
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
