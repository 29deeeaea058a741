"""The demo batch on the real Docker engine, through the runner: the infrastructure, demo-shop and
Schemathesis images are built, then `python -m remote_runner run` runs one 30-second experiment.
The recordings must be complete: coverage sampled at least every 5 s and rising, 2xx and 5xx
answers in the traffic database, and every request the tool says it sent recorded (and nothing
else but the runner's readiness probes)."""

from __future__ import annotations

import csv
import itertools
import json
import re
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

import pytest

from remote_runner.analysis import traffic
from remote_runner.common.process import execute

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUDGET = 30
INTERVAL = 5.0
# The sampler works on a fixed 5 s grid; a sample may start a little late when the 0.5-CPU container
# is busy, so one gap can be a bit over 5 s if the one before it was a bit under.
GAP_TOLERANCE = 0.75


def header(headers_json: str, name: str) -> str:
    headers = json.loads(headers_json)
    return next((v for k, v in headers.items() if k.lower() == name), "")


@pytest.fixture(scope="module")
def demo_run(
    demo_images: dict[str, float], project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    results = tmp_path_factory.mktemp("demo-results")
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--no-preflight",
            "--catalog",
            ".",
            "--apis",
            "demo-shop",
            "--tools",
            "schemathesis",
            "--runs",
            "1",
            "--budget",
            f"{BUDGET}s",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "512m",
            "--min-free-cpus",
            "0",
            "--results",
            str(results),
        ],
        cwd=project_root,
        timeout=300,
    )
    assert res.ok, res.tail(40)
    runs = list(results.glob("batch-*/demo-shop/schemathesis/run-1"))
    assert len(runs) == 1, f"expected one run folder under {results}:\n{res.tail(40)}"
    return runs[0]


def test_run_succeeded(demo_run: Path) -> None:
    meta = json.loads((demo_run / "metadata.json").read_text())
    assert meta["status"] == "succeeded", meta
    assert meta["exit_codes"] == {"api": 0, "tool": 0}
    assert meta["oom_killed"] == {"api": False, "tool": False}


def test_coverage_series_every_five_seconds_and_rising(demo_run: Path) -> None:
    with (demo_run / "coverage" / "series.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, "no coverage samples"
    assert list(rows[0]) == [
        "epoch",
        "line_covered",
        "line_missed",
        "branch_covered",
        "branch_missed",
        "method_covered",
        "method_missed",
        "instruction_covered",
        "instruction_missed",
    ]
    epochs = [float(r["epoch"]) for r in rows]
    assert epochs == sorted(epochs)
    gaps = [b - a for a, b in itertools.pairwise(epochs)]
    assert max(gaps) <= INTERVAL + GAP_TOLERANCE, gaps
    meta = json.loads((demo_run / "metadata.json").read_text())
    # The series covers the whole time the tool ran (UTC epoch, as the runner's UTC stamps).
    tool_span = time_span(meta["tool_start_utc"], meta["tool_stop_utc"])
    assert epochs[0] <= tool_span[0] + INTERVAL
    assert epochs[-1] >= tool_span[1]
    assert len(rows) >= BUDGET // INTERVAL
    lines = [int(r["line_covered"]) for r in rows]
    assert lines == sorted(lines), "cumulative coverage went down"
    assert lines[-1] > 0
    assert lines[-1] > lines[0]
    total = int(rows[-1]["line_covered"]) + int(rows[-1]["line_missed"])
    assert total > 100, "demo-shop has a few hundred lines; the analysis missed classes"
    final = (demo_run / "coverage" / "final.csv").read_text()
    assert "demo.shop,ShopServer," in final


def time_span(start_iso: str, stop_iso: str) -> tuple[float, float]:
    def epoch(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    return epoch(start_iso), epoch(stop_iso)


def test_traffic_has_2xx_and_5xx(demo_run: Path) -> None:
    db = sqlite3.connect(demo_run / "traffic.sqlite")
    statuses = [s for (s,) in db.execute("SELECT status FROM requests")]
    assert any(s is not None and 200 <= s < 300 for s in statuses)
    assert any(s is not None and 500 <= s < 600 for s in statuses)
    five = next(r for r in traffic.read_all(demo_run / "traffic.sqlite") if (r["status"] or 0) >= 500)
    assert five["path"].endswith("/quote")
    assert (
        b"ArithmeticException" in five["response_body"] or b"NumberFormatException" in five["response_body"]
    )
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_every_request_of_the_tool_is_recorded(demo_run: Path) -> None:
    log = (demo_run / "logs" / "tool.log").read_text(errors="replace")
    totals = re.findall(r"TOOL_REQUESTS sent=(\d+) answered=(\d+) runs=(\d+)", log)
    assert len(totals) == 1, log[-2000:]
    sent, answered, runs = (int(x) for x in totals[0])
    assert runs >= 1
    assert sent > 50
    # Schemathesis ended its last run itself, before the budget: nothing was in flight.
    assert answered == sent
    rows = [
        (r["request_headers"], r["finished"], r["status"])
        for r in traffic.read_all(demo_run / "traffic.sqlite")
    ]
    by_tool = [r for r in rows if header(r[0], "user-agent").startswith("schemathesis/")]
    others = [header(r[0], "user-agent") for r in rows if r not in by_tool]
    assert len(by_tool) == sent
    # The only other requests are the runner's readiness probes (urllib), sent before the tool.
    assert all(ua.startswith("Python-urllib/") for ua in others), others
    # Every recorded request got its answer recorded too.
    assert all(r[1] is not None and r[2] is not None for r in by_tool)
