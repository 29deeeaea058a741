"""The report from a batch made by real experiments: ``python -m remote_runner run`` on the local Docker
engine with the offline demo-shop API (recording proxy + JaCoCo sampler: real traffic.sqlite and
coverage series) against schemathesis (a real tool), the runner's fx-good fixture tool (requests, no
2xx) and its fx-crash fixture tool (a failed run), these two under aliases. Statistics checked
against scipy on the numbers of the batch's summary.csv.

Budgets are seconds here, so schemathesis (which starts slowly) cannot span 90 % of the budget: the
test re-summarises with thresholds scaled to such budgets (thresholds are configurable for this) and
checks that the runner's own summaries, with the default thresholds, mark those runs unverified."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu

from remote_runner.analysis import results, stats
from remote_runner.analysis.report import document as report
from remote_runner.common import exit_codes
from remote_runner.common.process import execute
from remote_runner.analysis.verification import Thresholds

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_TOOLS = ROOT / "tests" / "runner" / "fixtures" / "catalog" / "tools"
SPEC = ROOT / "apis" / "demo-shop" / "specifications" / "demo-shop-openapi.json"
BUDGET = 15.0
ALIASES = {"res-good": "fx-good", "res-crash": "fx-crash"}
# scaled to seconds-long budgets on a busy 2-core machine, where schemathesis spends most of the
# budget starting up
SHORT_BUDGET = Thresholds(min_requests_per_minute=8, min_span_fraction=0.1, min_samples_per_minute=4)


def rows_of(batch: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((batch / "summary.csv").open()))


@pytest.fixture(scope="module")
def batch(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not execute(["docker", "image", "inspect", "llamaresttest-test/pybase"], timeout=30).ok:
        built = execute(
            [
                "docker",
                "build",
                "-t",
                "llamaresttest-test/pybase",
                str(ROOT / "tests/runner/fixtures/pybase"),
            ],
            timeout=600,
        )
        assert built.ok, built.tail()
    catalog = tmp_path_factory.mktemp("catalog")
    (catalog / "apis").mkdir()
    (catalog / "tools").mkdir()
    (catalog / "apis" / "demo-shop").symlink_to(ROOT / "apis" / "demo-shop")
    (catalog / "tools" / "schemathesis").symlink_to(ROOT / "tools" / "schemathesis")
    # the runner's fixture tools under names of our own: their images (llamaresttest/tool-res-*) are
    # then ours, so the runner's tests cleaning up their fx-* images cannot pull them from under us
    for alias, tool in ALIASES.items():
        (catalog / "tools" / alias).symlink_to(FIXTURE_TOOLS / tool)
    out = tmp_path_factory.mktemp("results")
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--no-preflight",
            "--catalog",
            str(catalog),
            "--results",
            str(out),
            "--runs",
            "3",
            "--budget",
            f"{BUDGET:g}s",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "512m",
            "--min-free-cpus",
            "0",
            "--max-attempts",
            "1",
            "--stop-grace",
            "10",
        ],
        timeout=900,
        cwd=ROOT,
    )
    # res-crash fails every run on purpose: the batch is done, with failed runs
    assert res.returncode == exit_codes.DONE_WITH_FAILURES, res.tail(60)
    batches = sorted(out.glob("batch-*"))
    assert len(batches) == 1, res.tail()
    return batches[0]


def test_runner_batch_has_real_metrics_and_failure_reasons(batch: Path) -> None:
    rows = rows_of(batch)
    assert len(rows) == 9
    by_tool: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_tool.setdefault(r["tool"], []).append(r)
    for r in by_tool["res-crash"]:
        assert r["status"] == "failed" and "crash" in r["reason"], r
        assert r["verified"] == "false"
    for r in by_tool["schemathesis"]:
        assert r["status"] == "succeeded", r
        assert int(r["requests"]) >= 1
        assert 0 < float(r["line_coverage"]) <= 1
        # default thresholds: a 10 s budget cannot be spanned by a tool that starts in seconds
        assert r["verified"] == "false" and "request_span" in r["failed_checks"]
    # real traffic and coverage: schemathesis answers with 2xx on several operations (in at least
    # one run: on a busy machine a run may spend most of its seconds starting up)
    assert max(int(r["operations_covered"]) for r in by_tool["schemathesis"]) >= 2
    assert max(int(r["status_2xx"]) for r in by_tool["schemathesis"]) >= 2
    for r in by_tool["res-good"]:
        assert int(r["requests"]) >= 1 and r["status_2xx"] == "0" and r["operations_covered"] == "0"
    md = (batch / "report.md").read_text()  # written by the runner at the end of the batch
    assert "| demo-shop | res-crash | 1 | failed |" in md
    assert (batch / "report.html").is_file() and (batch / "coverage-demo-shop.png").is_file()


def test_report_statistics_on_real_runs_match_scipy(batch: Path, tmp_path: Path) -> None:
    for run_dir in results.find_run_dirs(batch):
        results.write_run_summary(run_dir, SPEC, BUDGET, thresholds=SHORT_BUDGET)
    results.write_batch_summary(batch)
    rows = rows_of(batch)
    verified = {(r["tool"], r["run"]) for r in rows if r["verified"] == "true"}
    assert {t for t, _ in verified} == {"res-good", "schemathesis"}, rows
    md = report.build_report(batch, tmp_path).read_text()
    assert (tmp_path / "coverage-demo-shop.png").read_bytes().startswith(b"\x89PNG")
    n = {t: sum(1 for tt, _ in verified if tt == t) for t in ("res-good", "schemathesis")}
    assert (
        f"| res-crash: all completed (n=0) | res-crash: verified only (n=0) | res-good: all completed "
        f"(n={n['res-good']}) | res-good: verified only (n={n['res-good']}) | schemathesis: all completed "
        f"(n={n['schemathesis']}) | schemathesis: verified only (n={n['schemathesis']}) |"
    ) in md
    comparisons = md.split("### Tool comparisons", 1)[1].split("###", 1)[0].splitlines()
    header = next(ln for ln in comparisons if ln.startswith("| metric | res-crash vs"))
    pairs = [c.strip() for c in header.strip("|").split("|")[1:]]
    col = pairs.index("res-good vs schemathesis")
    for label, column in (
        ("Line coverage", "line_coverage"),
        ("Requests", "requests"),
        ("2xx responses", "status_2xx"),
    ):
        line = next(ln for ln in comparisons if ln.startswith(f"| {label} |"))
        cell = line.strip("|").split("|")[1:][col].strip()
        x = [float(r[column]) for r in rows if r["tool"] == "res-good" and r["verified"] == "true"]
        y = [float(r[column]) for r in rows if r["tool"] == "schemathesis" and r["verified"] == "true"]
        ref = mannwhitneyu(x, y, alternative="two-sided")
        p = float(ref.pvalue)
        shown = "<0.001" if p < 0.001 else f"{p:.3f}"
        a12 = float(ref.statistic) / (len(x) * len(y))
        # res-crash has no completed run: the family is this one pair, so Holm leaves p as it is
        expected = f"p={shown} (uncorrected {shown}), A12={a12:.2f} {stats.a12_magnitude(a12)}"
        assert cell == expected, (label, cell, expected)
