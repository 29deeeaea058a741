"""The batch report from a batch folder built with realistic run files (traffic.sqlite, series.csv,
metadata.json as docs/contracts.md describes them), statistics checked against scipy."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from remote_runner.analysis import results
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import figures
from remote_runner.analysis.report import tables
from remote_runner.common.process import execute
from remote_runner.analysis.verification import Thresholds
from tests.results.factory import PETSTORE_SPEC, Row, synthetic_run, write_metadata, write_traffic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# 90 requests a minute count as enough (a run below one row of the cumulative series stays verified)
SLOW_OK = Thresholds(min_requests_per_minute=60)
# headless flags that work on this project's machines (../shared/ENVIRONMENT.md)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    spec = root / "petstore-openapi.json"
    spec.write_text(json.dumps(PETSTORE_SPEC))
    batch = root / "batch-20261129T230000Z"
    seed = 0
    for api in ("petstore", "shop"):
        for tool, skill in (("llamaresttest", 0.8), ("schemathesis", 0.3), ("arat-rl", 0.5)):
            for n in range(1, 7):
                seed += 1
                synthetic_run(batch / api / tool / f"run-{n}", seed=seed, skill=skill, budget=60)
    # a run that failed before any traffic
    failed = batch / "petstore" / "schemathesis" / "run-7"
    write_metadata(failed, status="failed", reason="API not ready after 300 s")
    # a run that finished but is too slow to be verified (110 requests a minute, no coverage samples):
    # a result, kept in the main analysis with a flag
    slow = batch / "petstore" / "arat-rl" / "run-7"
    write_traffic(
        slow / "traffic.sqlite",
        [Row(1_764_000_001.0 + i / 2, "GET", "/api/v1/pets", 200) for i in range(110)],
    )
    write_metadata(slow, status="succeeded", started=1_764_000_000.0)
    for run_dir in results.find_run_dirs(batch):
        results.write_run_summary(run_dir, spec, 60)
    results.write_batch_summary(batch)
    report.build_report(batch)
    return batch


def values(batch: Path, api: str, tool: str, column: str, *, verified_only: bool = False) -> list[float]:
    """The runs' ``column`` in the main analysis (every completed run) or, with ``verified_only``,
    in the analysis on fully verified runs."""
    rows = csv.DictReader((batch / "summary.csv").open())
    return [
        float(r[column])
        for r in rows
        if r["api"] == api
        and r["tool"] == tool
        and r["status"] == "succeeded"
        and (r["verified"] == "true" or not verified_only)
        and r[column] != ""
    ]


def test_report_files(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    html = (batch / "report.html").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    cd = [f"cd-{key}{basis}.png" for key, _ in tables.RANK_METRICS for basis in ("", "-equal-requests")]
    assert sorted(images) == sorted(
        ["coverage-petstore.png", "coverage-shop.png", "operations-covered.png", *cd]
    )
    for name in images:
        assert (batch / name).read_bytes().startswith(PNG_MAGIC)
        assert f'src="{name}"' in html
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "38 runs: 37 completed, of which 36 fully verified and 1 kept with a flag; 1 failed." in md
    assert "Budget per run: 60 s." in md


def test_report_lists_excluded_runs_with_reasons(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    section = md.split("## Runs left out of the statistics", 1)[1].split("\n## ", 1)[0]
    assert "| petstore | schemathesis | 7 | failed | API not ready after 300 s" in section
    assert "| petstore | arat-rl | 7 |" not in section  # slow, not broken: kept
    flagged = md.split("## Runs kept with a flag", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in flagged.splitlines() if "| petstore | arat-rl | 7 |" in ln)
    assert "requests_per_minute: 110.0 (needs 130.0)" in line
    assert "coverage_samples_per_minute: 0.0 (needs 12.0)" in line
    # n per analysis: the slow run is in the main one, not in the verified-only one
    assert "| metric | arat-rl: all completed (n=7) | arat-rl: verified only (n=6) | llamaresttest: all" in md


def test_report_medians_and_statistics_match_numpy_and_scipy(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    api_section = md.split("## API: petstore", 1)[1].split("## API: shop", 1)[0]
    # median [Q1, Q3] of requests of llamaresttest
    reqs = values(batch, "petstore", "llamaresttest", "requests")
    assert len(reqs) == 6
    row = next(ln for ln in api_section.splitlines() if ln.startswith("| Line coverage |"))
    line_cov = values(batch, "petstore", "arat-rl", "line_coverage")
    q1, med, q3 = np.percentile(line_cov, [25, 50, 75])
    assert row.split("|")[2].strip() == f"{100 * med:.1f}% [{100 * q1:.1f}%, {100 * q3:.1f}%]"
    # pairwise: Holm-corrected p (scikit-posthocs over the (API, metric) family of three pairs), the
    # uncorrected p (scipy) and A12 with its magnitude label, the pair order as in the header
    import pandas as pd
    import scikit_posthocs as sp

    from remote_runner.analysis import stats

    header = next(ln for ln in api_section.splitlines() if ln.startswith("| metric | arat-rl vs"))
    pairs = [c.strip() for c in header.strip("|").split("|")[1:]]
    assert pairs == ["arat-rl vs llamaresttest", "arat-rl vs schemathesis", "llamaresttest vs schemathesis"]
    checked = 0
    for label, column in (
        ("Line coverage", "line_coverage"),
        ("Operations covered (2xx)", "operations_covered"),
        ("5xx responses", "status_5xx"),
        ("Unique failures (ours)", "unique_failures"),
    ):
        cells = (
            next(ln for ln in api_section.splitlines() if ln.startswith(f"| {label} |") and "p=" in ln)
            .strip("|")
            .split("|")[1:]
        )
        family = {
            t: values(batch, "petstore", t, column) for t in ("arat-rl", "llamaresttest", "schemathesis")
        }
        frame = pd.DataFrame(
            {"v": [v for t in family for v in family[t]], "g": [t for t in family for _ in family[t]]}
        )
        holm = sp.posthoc_mannwhitney(frame, val_col="v", group_col="g", p_adjust="holm")
        for pair, cell in zip(pairs, cells, strict=True):
            a, b = pair.split(" vs ")
            x, y = family[a], family[b]
            ref = mannwhitneyu(x, y, alternative="two-sided")
            m = re.fullmatch(r"p=(<?[0-9.]+) \(uncorrected (<?[0-9.]+)\), A12=([0-9.]+) (\w+)", cell.strip())
            assert m, cell
            p, corrected = float(ref.pvalue), float(holm.loc[a, b])
            assert m.group(1) == ("<0.001" if corrected < 0.001 else f"{corrected:.3f}")
            assert m.group(2) == ("<0.001" if p < 0.001 else f"{p:.3f}")
            a12 = float(ref.statistic) / (len(x) * len(y))
            assert m.group(3) == f"{a12:.2f}" and m.group(4) == stats.a12_magnitude(a12)
            checked += 1
    assert checked == 12
    # the tools really differ in this synthetic batch: the best vs the worst is significant after the
    # correction (p=0.015, uncorrected 0.005: Holm multiplies the smallest of three by 3)
    lc = next(ln for ln in api_section.splitlines() if ln.startswith("| Line coverage |") and "p=" in ln)
    corrected = re.match(r"p=([0-9.]+) ", lc.split("|")[4].strip())
    assert "llamaresttest vs schemathesis" in header and corrected and float(corrected.group(1)) < 0.05


def test_cli_writes_to_out_dir(batch: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    assert report.main([str(batch), "--out", str(out)]) == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert (out / "operations-covered.png").read_bytes().startswith(PNG_MAGIC)
    assert report.main([str(tmp_path / "nope")]) == 2


def test_report_of_an_empty_or_all_failed_batch(tmp_path: Path) -> None:
    empty = tmp_path / "batch-empty"
    empty.mkdir()
    md = report.build_report(empty).read_text()
    assert "0 runs" in md and "This batch has no runs yet: nothing to report." in md
    assert "every run is verified" not in md
    failed = tmp_path / "batch-failed"
    write_metadata(failed / "api" / "tool" / "run-1", status="failed", reason="image build failed")
    conn = sqlite3.connect(failed / "journal.sqlite")
    conn.execute("CREATE TABLE runs (api TEXT, tool TEXT, repetition INTEGER, status TEXT, reason TEXT)")
    conn.execute("INSERT INTO runs VALUES ('api', 'tool', 2, 'pending', NULL)")
    conn.commit()
    conn.close()
    md = report.build_report(failed).read_text()
    assert "| api | tool | 1 | failed | image build failed" in md
    assert "| api | tool | 2 | pending | no run folder |" in md
    assert (
        "2 runs: 0 completed, of which 0 fully verified and 0 kept with a flag; 1 failed, 1 not finished."
        in md
    )
    assert not list(failed.glob("*.png"))  # nothing to plot, no empty plots


def test_an_api_whose_runs_are_only_flagged_keeps_its_coverage_plot(tmp_path: Path) -> None:
    """A stand-in batch's report once lacked coverage-features-service.png and
    coverage-genome-nexus.png although those runs had coverage samples: the plot drew verified runs
    only, and 10-second runs on a crowded machine fell short of the samples-per-minute check. Under the
    exclusion policy such runs are completed runs with a flag: they are plotted and in the main
    analysis; only the verified-only analysis leaves them out."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(PETSTORE_SPEC))
    batch = tmp_path / "batch-20261129T230000Z"
    for n in (1, 2):
        synthetic_run(batch / "fast" / "walker" / f"run-{n}", seed=n, budget=60)
        synthetic_run(batch / "slow-start" / "walker" / f"run-{n}", seed=10 + n, budget=60, sample_every=20)
    for run_dir in results.find_run_dirs(batch):
        results.write_run_summary(run_dir, spec, 60)
    results.write_batch_summary(batch)
    md = report.build_report(batch).read_text()
    slow = [r for r in tables.load_runs(batch) if r.api == "slow-start"]
    assert all(len(r.series) and r.completed and not r.verified for r in slow)
    assert all(any(f.startswith("coverage_samples_per_minute: ") for f in r.flags) for r in slow), slow
    assert (batch / "coverage-fast.png").read_bytes().startswith(PNG_MAGIC)
    assert (batch / "coverage-slow-start.png").read_bytes().startswith(PNG_MAGIC)
    section = md.split("## API: slow-start", 1)[1].split("\n## ", 1)[0]
    assert "| walker | 2 | 0 | 2 |" in section  # completed 2, fully verified 0, all 2
    flagged = md.split("## Runs kept with a flag", 1)[1]
    assert flagged.count("| slow-start | walker |") == 2
    # the reasons a plot is missing, on hand-made runs
    bare = tables.Run("x", "t", 1, "succeeded", False, "", {}, (), 60.0, "x/t/run-1")
    assert figures.no_coverage_plot_reason("x", [bare]) == "No plot: no run of x has coverage samples."
    done = tables.Run("x", "t", 1, "succeeded", True, "", {}, (), 60.0, "x/t/run-1", summarised=True)
    assert figures.no_coverage_plot_reason("x", [done]) == (
        "No plot: none of the 1 completed runs of x has coverage samples."
    )
    broken = tables.Run(
        "x", "t", 1, "failed", False, "api exited early", {}, ((0.0, 0.1, None, None),), 60.0, "x/t/run-1"
    )
    assert "no run of x completed; 1 of its 1 runs have coverage samples" in figures.no_coverage_plot_reason(
        "x", [broken]
    )


def test_coverage_matrix_steps_and_band_hand_checked() -> None:
    def run(series: list[tuple[float, float | None]]) -> tables.Run:
        return tables.Run(
            api="a",
            tool="t",
            run=1,
            status="succeeded",
            verified=True,
            reason="",
            values={},
            series=tuple((t, v, None, None) for t, v in series),
            budget_seconds=60.0,
            path="a/t/run-1",
        )

    runs = [run([(0.0, 0.1), (10.0, 0.3)]), run([(5.0, 0.2), (20.0, 0.6)]), run([(2.0, None)])]
    grid = [0.0, 5.0, 10.0, 20.0]
    m = figures.coverage_matrix(runs, 1, grid)
    assert np.isnan(m[1, 0]) and np.isnan(m[2]).all()  # before the first sample; no line values
    assert m[0].tolist() == [0.1, 0.1, 0.3, 0.3]  # last sample at or before t
    assert m[1, 1:].tolist() == [0.2, 0.2, 0.6]
    times, q1, med, q3 = figures.median_band(m, grid)
    assert times.tolist() == grid
    assert med.tolist() == pytest.approx([0.1, 0.15, 0.25, 0.45])
    assert q1.tolist() == pytest.approx([0.1, 0.125, 0.225, 0.375])
    assert q3.tolist() == pytest.approx([0.1, 0.175, 0.275, 0.525])


def test_console_summary_table(batch: Path) -> None:
    """The table `run` prints at its end: one row per API x tool, counts, medians of verified runs."""
    text = report.console_summary(tables.load_runs(batch))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["api", "tool", "runs", "verified"]
    row = next(ln for ln in lines if ln.startswith("petstore") and " schemathesis " in ln)
    assert row.split()[2:4] == ["7", "6"]  # run-7 failed: counted, not verified
    expected = tables.describe(values(batch, "petstore", "schemathesis", "requests"), "num")
    assert row.rstrip().endswith(expected)
    assert any(
        ln.startswith("not in the statistics: petstore/schemathesis/run-7: failed: API not ready after 300 s")
        for ln in lines
    )


PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({
    src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0,
    width: i.getBoundingClientRect().width
  }));
  const tables = [...document.querySelectorAll("table")].map(t => ({
    rows: t.querySelectorAll("tbody tr").length, height: t.getBoundingClientRect().height
  }));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, tables});
  document.body.appendChild(out);
});
</script>"""


def test_html_report_renders_in_headless_chromium(batch: Path, tmp_path: Path) -> None:
    """The report as a reader sees it: Debian's chromium loads report.html (a copy with a probe script
    that records, after the load event, what the browser made of every image and table)."""
    html = (batch / "report.html").read_text()
    for png in batch.glob("*.png"):
        (tmp_path / png.name).write_bytes(png.read_bytes())
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    res = execute(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        timeout=120,
    )
    assert res.ok, res.tail()
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.output, re.S)
    assert m, res.output[-2000:]
    seen = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    md = (batch / "report.md").read_text()
    expected_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert [i["src"] for i in seen["images"]] == expected_images
    broken = [i["src"] for i in seen["images"] if not i["loaded"] or i["width"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    # every table of the document is there, with all its rows, and takes room on the page
    expected_rows = [len(rows) for kind, (header, rows) in _tables(batch)]
    assert [t["rows"] for t in seen["tables"]] == expected_rows
    assert all(t["height"] > 0 for t in seen["tables"])
    # the protocol 1; per API 8 (runs, metrics, pairs on both analyses, at equal requests, areas, and
    # their pairs); per ranked metric 3 (at the budget's end and at equal requests on the main
    # analysis, at the budget's end on verified runs only); the runs left out 1, the flagged 1
    assert len(seen["tables"]) == 1 + 2 * 8 + 3 * len(tables.RANK_METRICS) + 2


def _tables(batch: Path) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    """The tables of report.md: (kind, (header, rows)) in order."""
    out = []
    lines = (batch / "report.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = lines[i]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([lines[i]])
                i += 1
            out.append(("table", ([header], rows)))
        else:
            i += 1
    return out


def test_cross_api_ranks_match_scipy_and_scikit_posthocs(batch: Path) -> None:
    import scikit_posthocs as sp
    from scipy.stats import friedmanchisquare, rankdata

    md = (batch / "report.md").read_text()
    section = md.split("### Ranks: Line coverage", 1)[1].split("###", 1)[0]
    assert "2 APIs went in: petstore, shop." in section
    tools = ["arat-rl", "llamaresttest", "schemathesis"]
    table = np.array(
        [[np.median(values(batch, api, t, "line_coverage")) for t in tools] for api in ("petstore", "shop")]
    )
    ref = friedmanchisquare(*table.T)
    assert f"Friedman chi-square = {float(ref.statistic):.3f}, df = 2, p = {float(ref.pvalue):.3f}" in section
    ranks = rankdata(-table, axis=1).mean(axis=0)
    nemenyi = sp.posthoc_nemenyi_friedman(table).to_numpy()
    for i, tool in enumerate(tools):
        row = next(ln for ln in section.splitlines() if ln.startswith(f"| {tool} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{ranks[i]:.2f}"
        header = next(ln for ln in section.splitlines() if ln.startswith("| tool | mean rank |"))
        others = [_vs(c) for c in header.strip("|").split("|")[2:]]
        for other, cell in zip(others, cells[2:], strict=True):
            j = tools.index(other)
            p = float(nemenyi[i, j])
            assert cell == ("-" if i == j else "<0.001" if p < 0.001 else f"{p:.3f}")
    assert (batch / "cd-line_coverage.png").read_bytes().startswith(PNG_MAGIC)


def _vs(cell: str) -> str:
    """The tool of a ``Nemenyi p vs <tool>[ (Friedman not significant)]`` column."""
    return cell.strip().removeprefix("Nemenyi p vs ").removesuffix(" (Friedman not significant)")


def _at_point(batch: Path, api: str, tool: str, point: int, column: str) -> list[float]:
    """Each completed run's ``column`` in its summary.json's cumulative row at ``point`` requests
    (runs without a value there, e.g. no coverage sample, are skipped, as the report does)."""
    out = []
    for r in csv.DictReader((batch / "summary.csv").open()):
        if r["api"] != api or r["tool"] != tool or r["status"] != "succeeded":
            continue
        block = json.loads((batch / api / tool / f"run-{r['run']}" / "summary.json").read_text())[
            "cumulative"
        ]
        rows = [dict(zip(block["columns"], row, strict=True)) for row in block["rows"]]
        value = next(row[column] for row in rows if row["requests"] == point)
        if value is not None:
            out.append(float(value))
    return out


@pytest.mark.parametrize(
    ("key", "label"), [("line_coverage", "Line coverage"), ("branch_coverage", "Branch coverage")]
)
def test_cross_api_ranks_at_equal_requests_match_scipy_and_scikit_posthocs(
    batch: Path, key: str, label: str
) -> None:
    """The second ranking: every tool at its API's smallest request count (the fewest requests of a
    verified run, rounded down to a row of the cumulative series), checked on the summaries' own
    cumulative rows against scipy and scikit-posthocs; the report says which ranking it is."""
    import scikit_posthocs as sp
    from scipy.stats import friedmanchisquare, rankdata

    md = (batch / "report.md").read_text()
    assert "twice: at the budget's end, then at equal requests" in md
    section = md.split(f"#### Ranks at equal requests: {label}", 1)[1].split("###", 1)[0]
    tools = ["arat-rl", "llamaresttest", "schemathesis"]
    points = {}
    for api in ("petstore", "shop"):
        smallest = min(
            int(r["requests"])
            for r in csv.DictReader((batch / "summary.csv").open())
            if r["api"] == api and r["status"] == "succeeded"
        )
        points[api] = smallest // 100 * 100
        assert points[api] >= 100
    assert (
        f"2 APIs went in, each at its smallest request count: petstore at {points['petstore']} requests, "
        f"shop at {points['shop']} requests." in section
    )
    table = np.array(
        [
            [np.median(_at_point(batch, api, t, points[api], key)) for t in tools]
            for api in ("petstore", "shop")
        ]
    )
    # the control: at equal requests the values differ from those at the budget's end
    end = np.array([[np.median(values(batch, api, t, key)) for t in tools] for api in ("petstore", "shop")])
    if key == "line_coverage":
        assert not np.array_equal(table, end)
    ref = friedmanchisquare(*table.T)
    assert f"Friedman chi-square = {float(ref.statistic):.3f}, df = 2, p = {float(ref.pvalue):.3f}" in section
    ranks = rankdata(-table, axis=1).mean(axis=0)
    nemenyi = sp.posthoc_nemenyi_friedman(table).to_numpy()
    header = next(ln for ln in section.splitlines() if ln.startswith("| tool | mean rank |"))
    others = [_vs(c) for c in header.strip("|").split("|")[2:]]
    for i, tool in enumerate(tools):
        cells = [
            c.strip()
            for c in next(ln for ln in section.splitlines() if ln.startswith(f"| {tool} |"))
            .strip("|")
            .split("|")
        ]
        assert cells[1] == f"{ranks[i]:.2f}"
        for other, cell in zip(others, cells[2:], strict=True):
            p = float(nemenyi[i, tools.index(other)])
            assert cell == ("-" if other == tool else "<0.001" if p < 0.001 else f"{p:.3f}")
    cd = f"cd-{key}-equal-requests.png"
    # two APIs: Friedman cannot be significant, so the diagram is marked
    assert float(ref.pvalue) >= 0.05
    assert (
        f"![critical-difference diagram: {label} at equal requests (Friedman not significant)]({cd})"
        in section
    )
    assert "the Nemenyi p-values and the CD diagram below are marked (not significant)" in section
    assert (batch / cd).read_bytes().startswith(PNG_MAGIC)


def test_an_api_below_one_series_row_is_left_out_of_the_equal_request_ranks(tmp_path: Path) -> None:
    """An API whose smallest verified run sent fewer requests than one row of the cumulative series
    has no values at equal requests: it stays in the ranks at the budget's end only, named."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(PETSTORE_SPEC))
    batch = tmp_path / "batch-20261129T230000Z"
    seed = 0
    for api, rate in (("petstore", 3.0), ("shop", 3.0), ("tiny", 1.5)):
        for tool, skill in (("a", 0.8), ("b", 0.3)):
            for n in (1, 2):
                seed += 1
                synthetic_run(batch / api / tool / f"run-{n}", seed=seed, skill=skill, budget=60, rate=rate)
    for run_dir in results.find_run_dirs(batch):
        results.write_run_summary(run_dir, spec, 60, thresholds=SLOW_OK)
    results.write_batch_summary(batch)
    md = report.build_report(batch).read_text()
    end = md.split("### Ranks: Line coverage", 1)[1].split("###", 1)[0]
    assert "3 APIs went in: petstore, shop, tiny." in end
    equal = md.split("#### Ranks at equal requests: Line coverage", 1)[1].split("###", 1)[0]
    assert (
        "2 APIs went in, each at its smallest request count: petstore at 100 requests, shop at 100 requests."
        in equal
    )
    assert "Left out (a tool has no value at equal requests): tiny." in equal


def test_damaged_summaries_are_named_with_file_and_error_and_never_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch-damaged"
    good = batch / "petstore" / "st" / "run-1"
    synthetic_run(good, seed=1, budget=60, rate=3, skill=0.8)
    results.write_run_summary(good, None, 60)
    assert tables.load_runs(batch)[0].verified  # the control: an intact summary counts
    torn = batch / "petstore" / "st" / "run-2"
    synthetic_run(torn, seed=2, budget=60, rate=3, skill=0.8)
    results.write_run_summary(torn, None, 60)
    (torn / "summary.json").write_text((torn / "summary.json").read_text()[:200])  # cut mid-write
    typed = batch / "petstore" / "st" / "run-3"
    synthetic_run(typed, seed=3, budget=60, rate=3, skill=0.8)
    summary = results.write_run_summary(typed, None, 60)
    summary["verification"]["verified"] = "yes"  # a string where a boolean belongs
    (typed / "summary.json").write_text(json.dumps(summary))
    runs = {r.run: r for r in tables.load_runs(batch)}
    assert runs[1].verified and not runs[2].verified and not runs[3].verified
    assert runs[2].reason.startswith(f"damaged {torn / 'summary.json'}: not valid JSON")
    assert runs[3].reason.startswith(f"damaged {typed / 'summary.json'}: field verification.verified is str")
    assert not runs[2].failed and not runs[3].failed  # damaged is not "failed": the run itself may be fine
    assert report.main([str(batch)]) == 0
    err = capsys.readouterr().err
    assert "run-2: damaged" in err and "run-3: damaged" in err
    md = (batch / "report.md").read_text()
    assert "3 runs: 1 completed, of which 1 fully verified and 0 kept with a flag; 0 failed." in md
    assert "field verification.verified is str, expected bool" in md


def test_report_on_nothing_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "batch-empty"
    empty.mkdir()
    assert report.main([str(empty)]) == 1
    assert "holds no runs" in capsys.readouterr().err
    assert not (empty / "report.md").exists()
