"""Tool restarts (TOOL_RESTART lines of logs/tool.log) in summary.json, summary.csv, the report and
verification: a run past max_tool_restarts fails with that reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from remote_runner.analysis import results
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import tables
from remote_runner.analysis.verification import Thresholds


def _restart(run: int) -> str:
    payload = {"run": run, "exit": 1, "reason": "KeyError: 'description'", "tail": ["Traceback", "KeyError: 'description'"]}
    return f"[llamaresttest 2026-12-01T20:00:0{run}Z] TOOL_RESTART {json.dumps(payload)}\n"


def _run_dir(tmp_path: Path, restarts: int) -> Path:
    run_dir = tmp_path / "batch" / "demo-shop" / "llamaresttest" / "run-1"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "metadata.json").write_text(json.dumps({"status": "succeeded", "api": "demo-shop"}))
    (run_dir / "logs" / "tool.log").write_text("starting\n" + "".join(_restart(k) for k in range(1, restarts + 1)))
    return run_dir


def test_restarts_counted_and_failing_verification_past_the_threshold(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, 4)
    summary = results.write_run_summary(run_dir, None, 60.0, thresholds=Thresholds(max_tool_restarts=3))
    assert summary["tool_restarts"] == 4
    assert [c["reason"] for c in summary["tool_crashes"]] == ["KeyError: 'description'"] * 4
    assert summary["tool_crashes"][0]["tail"][-1] == "KeyError: 'description'"
    check = next(c for c in summary["verification"]["checks"] if c["name"] == "tool_restarts")
    assert (check["passed"], check["measured"], check["threshold"]) == (False, 4, 3)
    assert "KeyError: 'description'" in check["detail"]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["tool_restarts"] == 4
    results.write_batch_summary(tmp_path / "batch")
    row = next(csv.DictReader((tmp_path / "batch" / "summary.csv").open()))
    assert row["tool_restarts"] == "4" and "tool_restarts" in row["failed_checks"]
    doc = report.build_document("batch", tables.load_runs(tmp_path / "batch"), tmp_path, plots=False).markdown()
    assert "Tool restarts" in doc and "KeyError: 'description'" in doc


def test_restarts_at_the_threshold_pass_and_none_is_zero(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, 3)
    summary = results.write_run_summary(run_dir, None, 60.0, thresholds=Thresholds(max_tool_restarts=3))
    check = next(c for c in summary["verification"]["checks"] if c["name"] == "tool_restarts")
    assert check["passed"] and summary["tool_restarts"] == 3
    (run_dir / "logs" / "tool.log").write_text("no markers\n")
    summary = results.write_run_summary(run_dir, None, 60.0)
    assert summary["tool_restarts"] == 0 and summary["tool_crashes"] == []
