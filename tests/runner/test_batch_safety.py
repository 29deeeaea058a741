"""Nothing lost, nothing doubled (issue 11), on the real Docker engine with the fixture images: one
runner per batch, summaries rebuilt on resume, distinct exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.runner.conftest import (
    cli,
    journal_events,
    journal_rows,
    labelled,
    read_json,
    spawn,
    terminate,
    wait_for,
)
from tests.runner.test_integration import common

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def quick(catalog: Path, results: Path, label: str, runs: str, *extra: str) -> list[str]:
    return common(
        catalog,
        results,
        label,
        "--apis",
        "fx-echo",
        "--tools",
        "fx-good",
        "--runs",
        runs,
        "--budget",
        "3s",
        "--cpus-per-container",
        "0.25",
        "--memory-per-container",
        "64m",
        *extra,
    )


def test_a_second_runner_on_a_running_batch_refuses_naming_the_first_and_every_run_runs_once(
    fixture_images, tmp_path, test_label
):
    results = tmp_path / "results"
    first = spawn(*quick(fixture_images, results, test_label, "2"), log=tmp_path / "first.log")
    try:
        batch = wait_for(lambda: next(iter(results.glob("batch-*/plan.json")), None), 60, "a batch")
        batch = batch.parent
        wait_for(lambda: any(r["status"] == "running" for r in journal_rows(batch)), 60, "a run under way")
        # a resume started while the batch runs: refused at once, naming the live runner, no side effect
        resume = cli(*quick(fixture_images, results, test_label, "2", "--batch", batch.name), timeout=60)
        assert resume.returncode == 4, resume.stderr  # exit_codes.BATCH_BUSY
        assert f"PID {first.pid} on host" in resume.stderr, resume.stderr
        assert first.wait(120) == 0, (tmp_path / "first.log").read_text()
    finally:
        terminate(first)
    rows = journal_rows(batch)
    assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", 1), ("succeeded", 1)]
    started = [e["repetition"] for e in journal_events(batch) if e["event"] == "started"]
    assert sorted(started) == [1, 2], started  # every run once: the refused runners started nothing
    log = (batch / "runner.log").read_text()
    assert log.count(f"starting batch {batch.name}") == 1 and "resuming" not in log, log
    assert labelled(test_label) == ([], [])
    # the lock died with its runner: a resume now goes ahead (nothing left to run)
    again = cli("run", "--results", str(results), "--batch", batch.name, "--no-build", timeout=60)
    assert again.returncode == 0, again.stderr


def test_two_new_batches_started_in_the_same_second_get_their_own_folders(
    fixture_images, tmp_path, test_label
):
    results = tmp_path / "results"
    args = quick(fixture_images, results, test_label, "1")
    procs = [spawn(*args, log=tmp_path / f"runner-{i}.log") for i in range(2)]
    try:
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            terminate(p)
    assert codes == [0, 0], [(tmp_path / f"runner-{i}.log").read_text() for i in range(2)]
    batches = sorted(results.glob("batch-*"))
    assert len(batches) == 2, batches
    ids = set()
    for batch in batches:
        rows = journal_rows(batch)
        assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", 1)]
        ids.add(read_json(batch / "fx-echo" / "fx-good" / "run-1" / "metadata.json")["batch"])
    assert ids == {b.name for b in batches}  # each runner wrote only into its own folder
    assert labelled(test_label) == ([], [])


def test_a_finished_run_without_summary_gets_it_rebuilt_on_resume(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    res = cli(*quick(fixture_images, results, test_label, "1"), timeout=120)
    assert res.returncode == 0, res.stderr
    batch = next(results.glob("batch-*"))
    run_dir = batch / "fx-echo" / "fx-good" / "run-1"
    written = read_json(run_dir / "summary.json")
    # the state `kill -9` between the journal's "succeeded" and the summary hook leaves behind
    (run_dir / "summary.json").unlink()
    again = cli("run", "--results", str(results), "--batch", batch.name, "--no-build", timeout=60)
    assert again.returncode == 0, again.stderr
    rebuilt = read_json(run_dir / "summary.json")
    assert rebuilt == written
    assert re.search(
        r"rebuilt summary\.json of 1 finished runs: fx-echo/fx-good",
        (batch / "runner.log").read_text(),
    )
    assert [r["attempts"] for r in journal_rows(batch)] == [1]  # rebuilt, not re-run
