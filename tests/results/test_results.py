"""summary.json and summary.csv from real run folders (files as docs/contracts.md describes them)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from remote_runner.analysis import results, verification
from remote_runner.analysis.verification import Thresholds
from tests.results.factory import (
    PETSTORE_SPEC,
    Row,
    synthetic_run,
    write_metadata,
    write_series,
    write_traffic,
)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    p = tmp_path / "petstore-openapi.json"
    p.write_text(json.dumps(PETSTORE_SPEC), encoding="utf-8")
    return p


def checks(summary: dict) -> dict[str, dict]:
    return {c["name"]: c for c in summary["verification"]["checks"]}


# --- verification -----------------------------------------------------------------------------------


def test_verification_thresholds_at_their_boundaries() -> None:
    ok = verification.integrity_result("ok")
    verified, cs = verification.verify(
        requests=130, span_seconds=54.0, coverage_samples=12, budget_seconds=60.0, integrity=ok
    )
    assert verified, cs
    assert [c.measured for c in cs] == [130.0, 0.9, 12.0, "ok", 0]
    verified, cs = verification.verify(
        requests=129, span_seconds=53.9, coverage_samples=11, budget_seconds=60.0, integrity=ok
    )
    assert not verified
    assert [c.passed for c in cs] == [False, False, False, True, True]
    loose = Thresholds(min_requests_per_minute=100, min_span_fraction=0.5, min_samples_per_minute=1)
    verified, _ = verification.verify(
        requests=101,
        span_seconds=31.0,
        coverage_samples=1,
        budget_seconds=60.0,
        integrity=ok,
        thresholds=loose,
    )
    assert verified


def test_integrity_check_on_real_files(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite"
    write_traffic(good, [Row(1.0, "GET", "/", 200)])
    assert verification.database_integrity(good).passed
    missing = verification.database_integrity(tmp_path / "absent.sqlite")
    assert not missing.passed and missing.measured is None
    bad = tmp_path / "bad.sqlite"
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\x5a" * (4096 - 100)  # trash the first page after the header
    bad.write_bytes(bytes(data))
    res = verification.database_integrity(bad)
    assert not res.passed and res.measured != "ok"


# --- write_run_summary ------------------------------------------------------------------------------


def test_empty_run_folder_gets_a_summary(tmp_path: Path, spec_file: Path) -> None:
    run_dir = tmp_path / "batch" / "petstore" / "toolx" / "run-2"
    write_metadata(run_dir, status="failed", reason="tool image missing")
    s = results.write_run_summary(run_dir, spec_file, 60)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == s
    assert (s["api"], s["tool"], s["run"], s["status"], s["reason"]) == (
        "petstore",
        "toolx",
        2,
        "failed",
        "tool image missing",
    )
    assert s["requests"]["requests"] == 0
    assert s["operations"] == {
        "total": 8,
        "covered": 0,
        "covered_list": [],
        "with_5xx": 0,
        "with_5xx_list": [],
    }
    assert s["coverage"]["final"] is None and s["coverage"]["series"] == []
    assert s["first_2xx"] is None
    assert s["verification"]["verified"] is False
    assert checks(s)["traffic_db_integrity"]["measured"] is None


def test_zero_byte_database_and_missing_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "a" / "t" / "run-1"
    run_dir.mkdir(parents=True)
    (run_dir / "traffic.sqlite").write_bytes(b"")
    s = results.write_run_summary(run_dir, None, 60)
    assert s["requests"]["requests"] == 0
    assert "traffic database is empty" in s["problems"]
    assert "no spec given" in s["problems"]
    (run_dir / "traffic.sqlite").unlink()
    conn = sqlite3.connect(run_dir / "traffic.sqlite")
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    s = results.write_run_summary(run_dir, None, 60)
    assert s["problems"][0] == "traffic database has no requests table"
    assert s["operations"]["total"] is None


def test_realistic_run(tmp_path: Path, spec_file: Path) -> None:
    run_dir = tmp_path / "batch" / "petstore" / "good" / "run-1"
    synthetic_run(run_dir, seed=1, budget=60, rate=3, skill=0.8)
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert s["requests"]["requests"] == 180
    assert s["verification"]["verified"] is True, s["verification"]
    assert checks(s)["requests_per_minute"]["measured"] == 180.0
    assert checks(s)["coverage_samples_per_minute"]["measured"] == 13.0
    assert 0.95 < checks(s)["request_span"]["measured"] <= 1.0
    # all 8 spec operations (HEAD folds into GET /pets; /api/v1/unknown is none of them)
    assert s["operations"]["covered"] == 8
    assert "GET /pets/mine" in s["operations"]["covered_list"]
    assert s["failures"]["unique"] >= 1
    assert s["failures"]["unique"] <= 2 * s["operations"]["with_5xx"]  # two exception kinds at most
    assert 0 < s["coverage"]["final"]["line"] < 1
    assert s["coverage"]["series"][0][0] == 0.0  # metadata "started" is the series origin
    assert s["first_2xx"]["requests"] >= 1


def test_short_run_is_not_verified(tmp_path: Path, spec_file: Path) -> None:
    run_dir = tmp_path / "b" / "api" / "slow" / "run-1"
    write_traffic(run_dir / "traffic.sqlite", [Row(100.0 + i, "GET", "/api/v1/pets", 200) for i in range(10)])
    write_series(run_dir / "coverage" / "series.csv", [(100.0, 1, 9, 0, 1, 1, 1), (105.0, 2, 8, 0, 1, 1, 1)])
    s = results.write_run_summary(run_dir, spec_file, 60)
    c = checks(s)
    assert c["requests_per_minute"] == {**c["requests_per_minute"], "passed": False, "measured": 10.0}
    assert c["request_span"]["measured"] == pytest.approx(9.01 / 60, abs=1e-3)
    assert c["coverage_samples_per_minute"]["passed"] is False
    assert c["traffic_db_integrity"]["passed"] is True
    assert s["verification"]["verified"] is False


def test_torn_coverage_row_is_skipped(tmp_path: Path) -> None:
    run_dir = tmp_path / "b" / "api" / "t" / "run-1"
    write_series(run_dir / "coverage" / "series.csv", [(1.0, 1, 1, 1, 1, 1, 1)])
    with (run_dir / "coverage" / "series.csv").open("a") as fh:
        fh.write("2.0,5,5,")
    s = results.write_run_summary(run_dir, None, 60)
    assert s["coverage"]["samples"] == 1
    assert "1 malformed coverage rows skipped" in s["problems"]


def test_yaml_spec(tmp_path: Path) -> None:
    spec = tmp_path / "api.yaml"
    spec.write_text("swagger: '2.0'\nbasePath: /v2\npaths:\n  /items/{id}:\n    get: {}\n", encoding="utf-8")
    run_dir = tmp_path / "b" / "api" / "t" / "run-1"
    write_traffic(run_dir / "traffic.sqlite", [Row(1.0, "GET", "/v2/items/5", 200)])
    s = results.write_run_summary(run_dir, spec, 60)
    assert s["operations"]["covered_list"] == ["GET /items/{id}"]


# --- write_batch_summary ----------------------------------------------------------------------------


def test_batch_summary_has_a_row_per_run_with_failure_reasons(tmp_path: Path, spec_file: Path) -> None:
    batch = tmp_path / "batch-20261129T230000Z"
    for n in (1, 2):
        synthetic_run(batch / "petstore" / "good" / f"run-{n}", seed=n, skill=0.8)
        results.write_run_summary(batch / "petstore" / "good" / f"run-{n}", spec_file, 60)
    # failed with a reason in metadata.json
    write_metadata(batch / "petstore" / "bad" / "run-1", status="failed", reason="OOM-killed")
    results.write_run_summary(batch / "petstore" / "bad" / "run-1", spec_file, 60)
    # failed with the reason only in the journal, and no summary.json at all
    (batch / "petstore" / "bad" / "run-2").mkdir(parents=True)
    conn = sqlite3.connect(batch / "journal.sqlite")
    conn.execute("CREATE TABLE runs (api TEXT, tool TEXT, run INTEGER, status TEXT, reason TEXT)")
    conn.execute("INSERT INTO runs VALUES ('petstore', 'bad', 2, 'running', NULL)")
    conn.execute("INSERT INTO runs VALUES ('petstore', 'bad', 2, 'failed', 'api not ready after 300 s')")
    conn.execute("INSERT INTO runs VALUES ('petstore', 'bad', 3, 'pending', NULL)")  # never started
    conn.execute("INSERT INTO runs VALUES ('petstore', 'good', 1, 'succeeded', NULL)")
    conn.commit()
    conn.close()
    # an earlier attempt moved aside is not a run
    (batch / "petstore" / "good" / "run-1" / "attempts" / "attempt-1").mkdir(parents=True)
    out = results.write_batch_summary(batch)
    rows = list(csv.DictReader(out.open()))
    assert [(r["api"], r["tool"], r["run"]) for r in rows] == [
        ("petstore", "bad", "1"),
        ("petstore", "bad", "2"),
        ("petstore", "bad", "3"),
        ("petstore", "good", "1"),
        ("petstore", "good", "2"),
    ]
    by = {(r["tool"], r["run"]): r for r in rows}
    assert by[("bad", "1")]["status"] == "failed" and by[("bad", "1")]["reason"] == "OOM-killed"
    assert by[("bad", "2")]["status"] == "failed"
    assert by[("bad", "2")]["reason"] == "api not ready after 300 s"
    assert by[("bad", "2")]["requests"] == ""
    assert (by[("bad", "3")]["status"], by[("bad", "3")]["reason"]) == ("pending", "no run folder")
    assert by[("bad", "3")]["run_dir"] == ""
    assert by[("good", "1")]["verified"] == "true" and by[("good", "1")]["requests"] == "180"
    assert by[("good", "1")]["operations_covered"] == "8"
    assert by[("bad", "1")]["verified"] == "false"
    assert "requests_per_minute" in by[("bad", "1")]["failed_checks"]
    assert list(rows[0].keys()) == list(results.SUMMARY_COLUMNS)


def test_readiness_probes_before_the_tool_started_are_left_out(tmp_path: Path, spec_file: Path) -> None:
    run_dir = tmp_path / "b" / "petstore" / "t" / "run-1"
    write_traffic(
        run_dir / "traffic.sqlite",
        [
            Row(1000.0, "GET", "/api/v1/pets", 200),  # the runner's probe, before the tool started
            Row(1002.0, "GET", "/api/v1/pets/7", 404),
            Row(1003.0, "POST", "/api/v1/pets", 201),
        ],
    )
    write_metadata(
        run_dir, status="succeeded", start_utc="1970-01-01T00:16:30Z", tool_start_utc="1970-01-01T00:16:41Z"
    )
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert s["requests_before_tool_start"] == 1
    assert s["requests"]["requests"] == 2
    assert s["operations"]["covered_list"] == ["POST /pets"]
    assert s["first_2xx"] == {"seconds": 2.0, "requests": 2}
    # an attempt whose tool never started (no tool_start_utc): only probes, no tool traffic
    write_metadata(run_dir, status="failed", reason="docker error", start_utc="1970-01-01T00:16:30Z")
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert s["requests"]["requests"] == 0 and s["requests_before_tool_start"] == 3


def test_only_5xx_bodies_are_read(tmp_path: Path) -> None:
    db = tmp_path / "traffic.sqlite"
    write_traffic(db, [Row(1.0, "GET", "/a", 200, b"big body"), Row(2.0, "GET", "/a?x=1", 503, b"oops")])
    reqs, problem = results.read_requests(db)
    assert problem is None
    assert [(r.status, r.response_body, r.path) for r in reqs] == [(200, b"", "/a"), (503, b"oops", "/a")]
    assert reqs[1].query == "x=1"  # a path recorded with its query string is split


def test_rows_short_of_the_tools_own_count_fail_verification(tmp_path: Path, spec_file: Path) -> None:
    run_dir = tmp_path / "batch" / "petstore" / "good" / "run-1"
    synthetic_run(run_dir, seed=1, budget=60, rate=3, skill=0.8)  # 180 recorded rows
    (run_dir / "logs").mkdir(exist_ok=True)
    log = run_dir / "logs" / "tool.log"
    log.write_text("TOOL_REQUESTS sent=100 answered=100\nTOOL_REQUESTS sent=180 answered=179\n")
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert s["tool_requests"] == {"sent": 180, "answered": 179}  # the last line wins
    assert checks(s)["recorded_requests"]["passed"] is True
    assert s["verification"]["verified"] is True
    log.write_text("TOOL_REQUESTS sent=183 answered=183\n")  # 3 requests forwarded without a row
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert checks(s)["recorded_requests"] == {
        "name": "recorded_requests",
        "passed": False,
        "measured": 180,
        "threshold": 183,
        "detail": "180 rows recorded for the 183 requests the tool says it sent",
    }
    assert s["verification"]["verified"] is False
    log.write_text("a tool that does not count\n")
    s = results.write_run_summary(run_dir, spec_file, 60)
    assert s["tool_requests"] is None and "recorded_requests" not in checks(s)
