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

The document is built once as a list of blocks and rendered twice (Markdown, HTML). Its numbers come
from :mod:`remote_runner.analysis.report.tables`, its plots from :mod:`remote_runner.analysis.report.figures`.
"""

from __future__ import annotations

import argparse
import html
import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from remote_runner.analysis import cumulative, fault_report
from remote_runner.analysis.report.figures import (
    no_coverage_plot_reason,
    plot_coverage,
    plot_critical_difference,
    plot_operations,
)
from remote_runner.analysis.report.tables import (
    ALPHA,
    BASIS_TEXT,
    BUDGET_END,
    METRICS,
    RANK_METRICS,
    SERIES_METRICS,
    UNFINISHED_STATUSES,
    EqualRequests,
    Ranking,
    Run,
    describe,
    family_cells,
    fmt_p,
    load_runs,
    metric_values,
    rank_tools,
)
from remote_runner.analysis.results import (
    find_run_dirs,
    read_json,
    run_identity,
)
from remote_runner.common.sizes import format_size

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
        f"p = {fmt_p(res.p_value)}; CD = {ranking.critical_difference:.3f}."
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
                *["-" if i == j else fmt_p(ranking.nemenyi[i][j]) for j in order],
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
