"""The demo batch with the fault replay: the runner runs Schemathesis for 20 s against demo-shop and
the buggy test API (tests/images/buggy_shop, a temporary catalog's API), then ``python -m
remote_runner faults`` replays each run's 5xx requests and the report shows the confirmed count
beside the other four. Prints the replay time per run (the figure docs/results.md quotes).

demo-shop answers its planted 500 without logging a trace, so its confirmed faults fall back to
RESTgym's buckets and say so; buggy-shop logs its traces, so its faults are keyed by them.
Everything this test starts carries the label ``llamaresttest.test=replay-demo``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_runner.analysis import faults, results
from remote_runner.analysis.report import document as report
from remote_runner.analysis.verification import Thresholds
from remote_runner.batch import replay
from remote_runner.common.process import execute
from remote_runner.experiment.docker_runtime import Docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LABEL = "llamaresttest.test=replay-demo"
BUDGET = 20.0
MAX_REQUESTS = 4


@pytest.fixture(scope="module")
def labelled() -> Iterator[None]:
    yield
    Docker().remove_labelled(LABEL)


@pytest.fixture(scope="module")
def batch(
    demo_images: dict[str, float], labelled: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, float]:
    built = execute(
        [
            "docker",
            "build",
            "-q",
            "--label",
            LABEL,
            "-t",
            "llamaresttest/api-buggy-shop",
            "tests/images/buggy_shop",
        ],
        cwd=ROOT,
        timeout=900,
    )
    assert built.ok, built.tail(40)
    catalog = tmp_path_factory.mktemp("demo-faults-catalog")
    (catalog / "apis").mkdir()
    (catalog / "tools").mkdir()
    (catalog / "apis" / "demo-shop").symlink_to(ROOT / "apis" / "demo-shop")
    (catalog / "apis" / "buggy-shop").symlink_to(ROOT / "tests" / "images" / "buggy_shop")
    (catalog / "tools" / "schemathesis").symlink_to(ROOT / "tools" / "schemathesis")
    out = tmp_path_factory.mktemp("demo-faults-results")
    # the runner's own flags; --no-build: the images are the fixtures' (nothing to build from the catalog)
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--no-preflight",
            "--no-build",
            "--catalog",
            str(catalog),
            "--results",
            str(out),
            "--apis",
            "demo-shop,buggy-shop",
            "--tools",
            "schemathesis",
            "--runs",
            "1",
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
            "--label",
            LABEL,
        ],
        cwd=ROOT,
        timeout=600,
    )
    assert res.ok, res.tail(60)
    (batch_dir,) = sorted(out.glob("batch-*"))
    begin = time.monotonic()
    replayed = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "faults",
            str(batch_dir),
            "--catalog",
            str(catalog),
            "--max-requests",
            str(MAX_REQUESTS),
            "--cpus",
            "0.5",
            "--memory",
            "512m",
            "--label",
            LABEL,
        ],
        cwd=ROOT,
        timeout=900,
    )
    seconds = time.monotonic() - begin
    assert replayed.ok, replayed.tail(40)
    print(f"\n{replayed.output.strip()}")
    # summaries with thresholds scaled to a 20 s budget (as the two-tool report test does)
    short = Thresholds(min_requests_per_minute=0, min_span_fraction=0, min_samples_per_minute=0)
    for run_dir in results.find_run_dirs(batch_dir):
        api = run_dir.parent.parent.name
        spec = next((batch_dir / "specifications" / api).glob("*.json"))
        results.write_run_summary(
            run_dir, spec, BUDGET, thresholds=short, analysis=faults.default_analysis(api)
        )
    results.write_batch_summary(batch_dir)
    report.build_report(batch_dir)
    return batch_dir, seconds


def faults_of(batch_dir: Path, api: str) -> dict:
    return json.loads((batch_dir / api / "schemathesis" / "run-1" / replay.FAULTS_FILE).read_text())


def test_every_run_replayed_within_its_budget(batch: tuple[Path, float]) -> None:
    batch_dir, seconds = batch
    print(f"\nfaults step: {seconds:.1f} s for the batch")
    for api in ("demo-shop", "buggy-shop"):
        data = faults_of(batch_dir, api)
        print(
            f"  {api}: {data['distinct_5xx']} distinct 5xx requests, verdicts {data['verdicts']}, "
            f"{data['unique_confirmed']} unique confirmed faults, replay {data['replay_seconds']:.1f} s"
        )
        assert data["complete"] is True
        assert data["distinct_5xx"] >= 1
        replayed = [e for e in data["requests"] if e["verdict"] != replay.SKIPPED]
        assert len(replayed) == min(MAX_REQUESTS, data["distinct_5xx"])
        assert data["verdicts"]["skipped"] == max(0, data["distinct_5xx"] - MAX_REQUESTS)


def test_demo_shop_faults_fall_back_to_restgym_buckets(batch: tuple[Path, float]) -> None:
    data = faults_of(batch[0], "demo-shop")
    # the planted fault (quantity a multiple of 7) is deterministic: a /quote 500 on a product that a
    # fresh service has confirms. (One on a product the tool created during the run may not: its id
    # depends on every write before it, and the replay's prefix is only the session's last 20 writes;
    # seen in CI with /products/13/quote after Schemathesis had created products.)
    quotes = [
        e for e in data["requests"] if "/quote" in e["first"]["path"] and e["verdict"] != replay.SKIPPED
    ]
    assert any(e["verdict"] == replay.CONFIRMED for e in quotes), quotes
    assert data["faults"] and all(f["key_source"] == replay.KEY_BUCKET for f in data["faults"])


def test_buggy_shop_faults_are_keyed_by_trace(batch: tuple[Path, float]) -> None:
    data = faults_of(batch[0], "buggy-shop")
    keys = {f["key"] for f in data["faults"] if f["key_source"] == replay.KEY_TRACE}
    assert any(k.startswith("java.lang.ArithmeticException | fixture.buggy.Totals.share") for k in keys), data
    assert all(f["own_frames"] for f in data["faults"] if f["key_source"] == replay.KEY_TRACE)


def test_report_shows_the_new_count_beside_the_four(batch: tuple[Path, float]) -> None:
    md = (batch[0] / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| Confirmed unique faults")]
    assert len(rows) == 2  # one per API
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] != "-" and cells[1].split()[0].replace(".", "").isdigit(), row
    assert "## Confirmed faults (replayed)" in md
    assert "RESTgym bucket (no trace)" in md and "stack trace" in md
    assert (batch[0] / "faults-overlap.png").read_bytes()[:4] == b"\x89PNG"
    print("\n" + md[md.index("## Confirmed faults (replayed)") : md.index("## Runs left out")])
