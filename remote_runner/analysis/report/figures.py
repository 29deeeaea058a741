"""The report's figures (PNG, matplotlib without a display): coverage over time per API, operations
covered per API and tool, and a critical-difference diagram per ranking. Each function writes its file
next to the report and returns its name, or None when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remote_runner.analysis import stats
from remote_runner.analysis.report.tables import (
    ALPHA,
    BASIS_TEXT,
    BUDGET_END,
    COVERAGE_KINDS,
    GRID_POINTS,
    Ranking,
    Run,
    metric_values,
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
