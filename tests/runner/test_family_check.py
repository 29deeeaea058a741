"""One worker family per batch: a batch resumed after `pulumi up` changed the workers' family is
refused (exit 2, before anything runs), with the recorded family, the new one and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remote_runner import cli
from remote_runner.batch import plan
from remote_runner.batch.family_check import recorded_families, worker_family_problem
from remote_runner.batch.settings import merge
from remote_runner.common import exit_codes

CATALOG = Path(__file__).parent / "fixtures" / "catalog"
# small limits: the check, not this machine's size, is what the last test is about
SMALL = {"cpus_per_container": 0.5, "memory_per_container": "256m", "min_free_cpus": 0}
GROUP = {"project": "research-project-1", "zone": "us-central1-a", "name": "llamaresttest-dev-workers"}


def _plan(batch: Path, machine_type: str | None) -> dict[str, object]:
    group = {**GROUP, "size": 2, "slots": 2, **({"machine_type": machine_type} if machine_type else {})}
    settings, problems = merge(
        {"catalog": str(CATALOG), "apis": ["fx-echo"], "tools": ["fx-good"], "worker_group": group, **SMALL},
        {},
    )
    assert problems == []
    batch.mkdir(parents=True, exist_ok=True)
    plan.write(batch, plan.expand(("fx-echo",), ("fx-good",), 1), settings.to_json())
    return plan.read(batch)[1]


def _run_record(batch: Path, machine_type: str, family: str) -> None:
    run = batch / "fx-echo" / "fx-good" / "run-1"
    run.mkdir(parents=True)
    meta = {"status": "succeeded", "host": {"machine_type": machine_type, "machine_family": family}}
    (run / "metadata.json").write_text(json.dumps(meta))


def test_the_stack_writes_the_worker_machine_type_and_plan_json_keeps_it(tmp_path: Path) -> None:
    planned = _plan(tmp_path / "b", "n1-standard-32")
    assert planned["worker_group"]["machine_type"] == "n1-standard-32"
    assert recorded_families(tmp_path / "b", planned)[0] == "n1"
    # a config without it (an older stack) still reads, and writes no machine_type
    assert "machine_type" not in _plan(tmp_path / "c", None)["worker_group"]


def test_same_family_or_nothing_known_passes(tmp_path: Path) -> None:
    planned = _plan(tmp_path / "b", "n2d-standard-32")
    # another size of the same family is the same CPU: allowed
    assert worker_family_problem(tmp_path / "b", planned, "n2d-standard-96") is None
    # the current family unknown (a Ray cluster that is not the stack's): no check
    assert worker_family_problem(tmp_path / "b", planned, "") is None
    # nothing recorded (an older plan.json, no run yet): no check
    assert worker_family_problem(tmp_path / "c", _plan(tmp_path / "c", None), "c3-standard-88") is None


def test_another_family_is_refused_naming_both_and_the_fix(tmp_path: Path) -> None:
    planned = _plan(tmp_path / "b", "n1-standard-32")
    problem = worker_family_problem(tmp_path / "b", planned, "n2d-standard-32")
    assert problem is not None
    assert "ran on n1 workers (workerMachineType n1-standard-32 in its plan.json)" in problem
    assert "now n2d (n2d-standard-32)" in problem
    assert "start a new batch" in problem
    assert "pulumi config set llamaresttest:workerMachineType n1-standard-32" in problem


def test_an_older_plan_falls_back_to_the_families_its_runs_recorded(tmp_path: Path) -> None:
    batch = tmp_path / "b"
    planned = _plan(batch, None)
    _run_record(batch, "c3-standard-88", "c3")
    assert recorded_families(batch, planned) == (
        "c3",
        "machine types its runs recorded: c3-standard-88",
        "c3-standard-88",
    )
    problem = worker_family_problem(batch, planned, "n2d-standard-32")
    assert problem is not None and "ran on c3 workers" in problem and "c3-standard-88" in problem


def test_run_refuses_the_resume_with_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    _plan(results / "batch-1", "n1-standard-32")
    config = tmp_path / "experiment.json"
    group = {**GROUP, "size": 2, "slots": 2, "machine_type": "n2d-standard-32"}
    config.write_text(
        json.dumps(
            {
                "catalog": str(CATALOG),
                **SMALL,
                "results": str(results),
                "batch": "batch-1",
                "apis": ["fx-echo"],
                "tools": ["fx-good"],
                "worker_group": group,
            }
        )
    )

    def nothing_may_run(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("the batch started")

    monkeypatch.setattr(cli.driver, "run_batch", nothing_may_run)
    monkeypatch.setattr(cli.images, "build", nothing_may_run)
    code = cli.main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == exit_codes.BAD_INPUT == 2
    assert "ran on n1 workers" in err and "now n2d (n2d-standard-32)" in err
    assert "fx-echo" not in err  # the family is the only problem: the fixture batch is otherwise valid
    assert not (results / "batch-1" / "journal.sqlite").exists()
