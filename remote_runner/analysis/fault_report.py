"""The report's "Confirmed faults" section, from the runs' ``faults.json`` (remote_runner/batch/replay.py).

A fault is identified across runs and tools by its API and key (the trace key, or RESTgym's bucket
when the service logged no trace: such keys are per run, so the same untraced fault found by two
runs can count twice across them; the table says which keys are buckets). Only completed runs (the
report's main analysis) count. Pure tables over plain data, plus one matplotlib plot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_TEXT = 160

#: a run's replay result (written by :mod:`remote_runner.batch.replay`, read here and by the replay's resume)
FAULTS_FILE = "faults.json"
FAULTS_VERSION = 1


def load_state(run_dir: Path) -> dict[str, Any]:
    """A run's ``faults.json``, or {} when it is missing, unreadable or of another version."""
    try:
        data = json.loads((run_dir / FAULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == FAULTS_VERSION else {}


@dataclass
class Fault:
    api: str
    key: str
    key_source: str
    #: per tool: (seconds, request number, run) of its earliest trigger
    first_by_tool: dict[str, tuple[float | None, int, int | None]] = field(default_factory=dict)
    #: the earliest trigger over every tool: its request (method, path, body_excerpt, ...)
    first: Mapping[str, Any] = field(default_factory=dict)
    first_tool: str = ""

    @property
    def tools(self) -> list[str]:
        return sorted(self.first_by_tool)


def _earlier(a: tuple[float | None, int], b: tuple[float | None, int]) -> bool:
    sa = a[0] if a[0] is not None else float("inf")
    sb = b[0] if b[0] is not None else float("inf")
    return (sa, a[1]) < (sb, b[1])


def collect(runs: Sequence[Any]) -> list[Fault]:
    """Every confirmed fault of the completed runs that have a complete ``faults.json`` (``run.replay``)."""
    found: dict[tuple[str, str], Fault] = {}
    for run in runs:
        data = getattr(run, "replay", None)
        if not run.completed or not data or not data.get("complete"):
            continue
        for f in data.get("faults", []):
            first = f.get("first") or {}
            fault = found.setdefault((run.api, f["key"]), Fault(run.api, f["key"], f.get("key_source", "")))
            when = (first.get("seconds"), int(first.get("number") or 0))
            mine = fault.first_by_tool.get(run.tool)
            if mine is None or _earlier(when, mine[:2]):
                fault.first_by_tool[run.tool] = (when[0], when[1], run.run)
            if not fault.first or _earlier(
                when, (fault.first.get("seconds"), int(fault.first.get("number") or 0))
            ):
                fault.first, fault.first_tool = first, run.tool
    return sorted(found.values(), key=lambda f: (f.api, f.key))


def _when(value: tuple[float | None, int, int | None]) -> str:
    seconds, number, run = value
    s = f"{seconds:.1f} s" if seconds is not None else "? s"
    return f"{s}, request {number} (run {run})"


def _short(key: str) -> str:
    return key if len(key) <= KEY_TEXT else key[: KEY_TEXT - 3] + "..."


def fault_rows(faults: Sequence[Fault]) -> list[list[str]]:
    rows = []
    for f in faults:
        first = f.first
        body = str(first.get("body_excerpt") or "")
        rows.append(
            [
                f.api,
                _short(f.key),
                "stack trace" if f.key_source == "trace" else "RESTgym bucket (no trace)",
                f"{first.get('method', '')} {first.get('path', '')}"
                + (f" body: {body[:80]}" if body else ""),
                ", ".join(f.tools),
                "; ".join(f"{t}: {_when(f.first_by_tool[t])}" for t in f.tools),
            ]
        )
    return rows


def only_one_tool(faults: Sequence[Fault], tools: Sequence[str]) -> list[list[str]]:
    """Rows of the "faults found by only one tool" table (none when the batch has a single tool)."""
    if len(tools) < 2:
        return []
    return [
        [f.tools[0], f.api, _short(f.key), _when(f.first_by_tool[f.tools[0]])]
        for f in sorted(faults, key=lambda f: (f.tools[0], f.api, f.key))
        if len(f.tools) == 1
    ]


def intersections(faults: Sequence[Fault], tools: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """Upset counts: each combination of tools that found exactly the same faults, with how many,
    largest first."""
    counts: dict[tuple[str, ...], int] = {}
    for f in faults:
        combo = tuple(t for t in tools if t in f.first_by_tool)
        counts[combo] = counts.get(combo, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))


def replay_rows(runs: Sequence[Any]) -> list[list[str]]:
    """Per run that was replayed: distinct 5xx requests, verdicts, unique confirmed faults, seconds."""
    rows = []
    for run in runs:
        data = getattr(run, "replay", None)
        if not data:
            continue
        v = data.get("verdicts") or {}
        rows.append(
            [
                run.api,
                run.tool,
                str(run.run),
                str(data.get("distinct_5xx", "")),
                str(v.get("confirmed", 0)),
                str(v.get("flaky", 0)),
                str(v.get("not reproduced", 0)),
                str(v.get("skipped", 0) + v.get("error", 0)),
                f"{data.get('unique_confirmed', '')} ({data.get('unique_confirmed_by_trace', '')} by trace)",
                str(data.get("container", "")),
                f"{float(data.get('replay_seconds') or 0):.1f}",
                "yes" if data.get("complete") else "no (run `faults` again)",
            ]
        )
    return rows


def plot_overlap(faults: Sequence[Fault], tools: Sequence[str], out_dir: Path) -> str | None:
    """faults-overlap.png: an UpSet-style plot of which tools found which confirmed faults (bars: faults
    per combination of tools; dots below: the combination)."""
    combos = intersections(faults, tools)
    if not combos or not tools:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(max(4.0, 0.7 * len(combos) + 2.5), 2.5 + 0.35 * len(tools)),
        gridspec_kw={"height_ratios": [3, max(1, len(tools)) * 0.5]},
        sharex=True,
    )
    xs = list(range(len(combos)))
    top.bar(xs, [n for _, n in combos], color="#3b6ea8")
    for x, (_, n) in zip(xs, combos, strict=True):
        top.text(x, n, str(n), ha="center", va="bottom", fontsize="small")
    top.set_ylabel("confirmed faults")
    top.set_title("Confirmed faults per set of tools", fontsize="medium")
    top.yaxis.get_major_locator().set_params(integer=True)
    top.grid(axis="y", alpha=0.3)
    for y, tool in enumerate(tools):
        members = [x for x, (combo, _) in zip(xs, combos, strict=True) if tool in combo]
        others = [x for x in xs if x not in members]
        bottom.scatter(others, [y] * len(others), color="#d0d0d0", s=40)
        bottom.scatter(members, [y] * len(members), color="#222222", s=40)
    for x, (combo, _) in zip(xs, combos, strict=True):
        ys = [tools.index(t) for t in combo]
        if len(ys) > 1:
            bottom.plot([x, x], [min(ys), max(ys)], color="#222222")
    bottom.set_yticks(range(len(tools)))
    bottom.set_yticklabels(tools)
    bottom.set_ylim(-0.5, len(tools) - 0.5)
    bottom.set_xticks(xs)
    bottom.set_xticklabels([])
    fig.subplots_adjust(left=0.3, right=0.97, bottom=0.08, top=0.9, hspace=0.05)
    name = "faults-overlap.png"
    fig.savefig(out_dir / name, dpi=80)
    plt.close(fig)
    return name
