"""The report's confirmed-fault section (remote_runner/analysis/fault_report.py, report.add_confirmed_faults) on a
synthetic batch whose runs carry faults.json files made by the replay's own grouping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remote_runner.analysis import fault_report, faults, results
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import tables
from remote_runner.batch import replay
from tests.results.factory import PETSTORE_SPEC, synthetic_run

TRACE_A = "java.lang.ArithmeticException | shop.Totals.share(Totals.java:11)"
TRACE_B = "java.lang.NullPointerException | shop.Carts.total(Carts.java:26)"


def entry(path: str, number: int, seconds: float, key: str | None, verdict: str = replay.CONFIRMED) -> dict:
    return {
        "signature": f"GET {path} e3b0c44298fc1c14",
        "verdict": verdict,
        "key": key,
        "own_frames": True if key else None,
        "response_excerpt": '{"message": "db connection refused"}',
        "first": {
            "number": number,
            "seconds": seconds,
            "method": "GET",
            "path": path,
            "body_excerpt": "",
            "status": 500,
        },
    }


def write_faults(run_dir: Path, entries: list[dict], *, complete: bool = True, seconds: float = 42.0) -> None:
    grouped = replay.group_faults(entries, faults.Analysis())
    data = {
        "version": replay.FAULTS_VERSION,
        "complete": complete,
        "distinct_5xx": len(entries),
        "verdicts": {
            v: sum(1 for e in entries if e["verdict"] == v)
            for v in (replay.CONFIRMED, replay.FLAKY, replay.NOT_REPRODUCED, replay.SKIPPED, "error")
        },
        "requests": entries,
        "faults": grouped,
        "unique_confirmed": len(grouped),
        "unique_confirmed_by_trace": sum(1 for f in grouped if f["key_source"] == replay.KEY_TRACE),
        "container": "fresh per replay",
        "replay_seconds": seconds,
    }
    (run_dir / replay.FAULTS_FILE).write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults-report")
    spec = root / "petstore-openapi.json"
    spec.write_text(json.dumps(PETSTORE_SPEC))
    batch = root / "batch-20261201T000000Z"
    seed = 0
    for tool in ("alpha", "beta", "gamma"):
        for n in (1, 2):
            seed += 1
            synthetic_run(batch / "shop" / tool / f"run-{n}", seed=seed, skill=0.5, budget=60)
    runs = {(p.parent.name, p.name): p for p in results.find_run_dirs(batch)}
    # alpha: A (twice, through two requests) and B; found A first at 3.5 s in run 2
    write_faults(runs["alpha", "run-1"], [entry("/a", 10, 9.0, TRACE_A), entry("/b", 12, 9.5, TRACE_B)])
    write_faults(runs["alpha", "run-2"], [entry("/a", 4, 3.5, TRACE_A), entry("/a2", 5, 4.0, TRACE_A)])
    # beta: A, plus a flaky one that is no fault
    write_faults(
        runs["beta", "run-1"], [entry("/a", 30, 20.0, TRACE_A), entry("/f", 2, 1.0, "X", replay.FLAKY)]
    )
    # beta run 2: replay interrupted, so no count and no faults from it
    write_faults(runs["beta", "run-2"], [entry("/z", 1, 0.5, "java.lang.Error | shop.Z.z")], complete=False)
    # gamma: a fault without a trace (RESTgym bucket)
    write_faults(runs["gamma", "run-1"], [entry("/c", 7, 2.0, None)])
    for run_dir in runs.values():
        results.write_run_summary(run_dir, spec, 60)
    report.build_report(batch)
    return batch


def test_confirmed_count_beside_the_other_four(batch: Path) -> None:
    runs = {(r.tool, r.run): r for r in tables.load_runs(batch)}
    assert runs["alpha", 1].values["confirmed_faults"] == 2
    assert runs["alpha", 2].values["confirmed_faults"] == 1  # two requests, one key
    assert runs["beta", 1].values["confirmed_faults"] == 1  # the flaky one is not counted
    assert runs["beta", 2].values["confirmed_faults"] is None  # incomplete replay: no figure
    assert runs["gamma", 2].values["confirmed_faults"] is None  # not replayed
    md = (batch / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| Confirmed unique faults"))
    assert "1.5 [1.2, 1.8]" in row  # alpha: median of 2 and 1
    for label in ("Unique failures (ours)", "Unique failures (RESTgym)", "Operations with a 500 (ARAT-RL)"):
        assert f"| {label}" in md


def test_fault_table_first_finds_and_only_one_tool(batch: Path) -> None:
    found = fault_report.collect(tables.load_runs(batch))
    by_key = {f.key: f for f in found}
    assert set(by_key) == {TRACE_A, TRACE_B} | {k for k in by_key if k.startswith("restgym-bucket-1: ")}
    a = by_key[TRACE_A]
    assert a.tools == ["alpha", "beta"]
    assert a.first_by_tool["alpha"] == (3.5, 4, 2)
    assert a.first_by_tool["beta"] == (20.0, 30, 1)
    assert a.first["path"] == "/a" and a.first_tool == "alpha"
    only = fault_report.only_one_tool(found, ["alpha", "beta", "gamma"])
    assert [(r[0], r[2][:30]) for r in only] == [
        ("alpha", TRACE_B[:30]),
        ("gamma", next(k for k in by_key if k.startswith("restgym"))[:30]),
    ]
    assert fault_report.intersections(found, ["alpha", "beta", "gamma"]) == [
        (("alpha",), 1),
        (("gamma",), 1),
        (("alpha", "beta"), 1),
    ]
    md = (batch / "report.md").read_text()
    assert "## Confirmed faults (replayed)" in md
    assert "### Faults found by only one tool" in md
    assert "alpha: 3.5 s, request 4 (run 2); beta: 20.0 s, request 30 (run 1)" in md
    assert "RESTgym bucket (no trace)" in md
    assert "no (run `faults` again)" in md  # beta run 2
    png = batch / "faults-overlap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "faults-overlap.png" in (batch / "report.html").read_text()


def test_a_batch_never_replayed_says_how(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(PETSTORE_SPEC))
    batch = tmp_path / "batch-20261202T000000Z"
    synthetic_run(batch / "shop" / "alpha" / "run-1", seed=1, budget=60)
    results.write_run_summary(batch / "shop" / "alpha" / "run-1", spec, 60)
    md = report.build_report(batch).read_text()
    assert "No run of this batch was replayed: run `python -m remote_runner faults BATCH`" in md
    assert not (batch / "faults-overlap.png").exists()
