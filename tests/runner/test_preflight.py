"""The preflight: a smoke run per API before the first real run; a broken API stops the batch
(or is left out with skip_broken_apis), its smoke run kept in BATCH/preflight/<api>/."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from remote_runner.experiment import preflight
from remote_runner.experiment.run_key import RunKey
from tests.runner.conftest import cli, only_batch

SERIES = "epoch,line_covered,line_missed,branch_covered,branch_missed,method_covered,method_missed\n"


def fake_smoke(good: set[str]):  # type: ignore[no-untyped-def]
    """Writes what a real smoke run leaves: traffic.sqlite, coverage/series.csv, logs/api.log."""

    def smoke(key: RunKey, folder: Path) -> SimpleNamespace:
        (folder / "coverage").mkdir(parents=True)
        (folder / "logs").mkdir()
        with sqlite3.connect(folder / "traffic.sqlite") as conn:
            conn.execute("CREATE TABLE requests (id INTEGER)")
            if key.api in good:
                conn.execute("INSERT INTO requests VALUES (1)")
        row = "1.0,3,40,0,0,1,5\n" if key.api in good else "1.0,0,0,0,0,0,0\n"
        (folder / "coverage" / "series.csv").write_text(SERIES + row)
        (folder / "logs" / "api.log").write_text(f"start\n{key.api}: last words\n")
        return SimpleNamespace(status="succeeded", reason=None)

    return smoke


def test_judge_names_every_missing_piece() -> None:
    ok = preflight.Evidence("succeeded", None, 3, 120, "")
    assert preflight.judge(ok) is None
    bad = preflight.Evidence("failed", "api not ready after 3 s", None, 0, "")
    why = preflight.judge(bad)
    assert why is not None
    assert "not ready" in why and "no traffic database" in why and "non-zero class count" in why
    assert "no request recorded" in str(preflight.judge(preflight.Evidence("succeeded", None, 0, 5, "")))


def test_check_reads_each_smoke_run_and_tables_the_broken(tmp_path: Path) -> None:
    verdicts = preflight.check(["good", "bad"], "t", tmp_path, fake_smoke({"good"}), threading.Event())
    assert [(v.api, v.ok) for v in verdicts] == [("good", True), ("bad", False)]
    assert (tmp_path / "preflight" / "bad" / "traffic.sqlite").is_file()
    text = preflight.table(verdicts)
    assert text.startswith("preflight: 1 of 2 APIs broken")
    assert "bad: last words" in text and "no request recorded" in text and "good  " not in text


def test_gate_stops_or_skips_the_broken(tmp_path: Path) -> None:
    args = (("good", "bad"), ("t",), tmp_path, fake_smoke({"good"}))
    stopping = SimpleNamespace(skip_broken_apis=False)
    assert preflight.gate(stopping, *args, threading.Event()) is None
    assert "bad" in (tmp_path / "preflight" / "report.txt").read_text()
    for folder in (tmp_path / "preflight").iterdir():
        if folder.is_dir():
            for f in sorted(folder.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            folder.rmdir()
    skipping = SimpleNamespace(skip_broken_apis=True)
    assert preflight.gate(skipping, *args, threading.Event()) == ("good",)


def test_cluster_smoke_runs_go_out_all_at_once(tmp_path: Path) -> None:
    """In cluster mode the smoke runs are placed on the workers in parallel: each waits here until
    all three have started, which a one-after-the-other preflight would never reach."""
    started = threading.Barrier(3, timeout=20)
    good = fake_smoke({"a", "b"})

    def smoke(key: RunKey, folder: Path) -> SimpleNamespace:
        started.wait()
        return good(key, folder)

    verdicts = preflight.check(["a", "b", "c"], "t", tmp_path, smoke, threading.Event(), parallel=True)
    assert [(v.api, v.ok) for v in verdicts] == [("a", True), ("b", True), ("c", False)]


@pytest.mark.docker
def test_a_batch_whose_api_never_gets_ready_stops_before_any_real_run(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    res = cli(
        "run",
        "--catalog",
        str(fixture_images),
        "--results",
        str(results),
        "--min-free-cpus",
        "0",
        "--label",
        test_label,
        "--no-build",
        "--apis",
        "fx-never-ready",
        "--tools",
        "fx-good",
        "--budget",
        "60",
        "--preflight-seconds",
        "2",
        "--cpus-per-container",
        "0.25",
        "--memory-per-container",
        "96m",
        timeout=120,
    )
    assert res.returncode == preflight.EXIT_BROKEN, res.stderr[-3000:]
    assert "preflight: 1 of 1 APIs broken" in res.stderr
    assert "fx-never-ready" in res.stderr and "not ready after 3 s" in res.stderr
    batch = only_batch(results)
    assert (batch / "preflight" / "fx-never-ready" / "metadata.json").is_file()
    assert not (batch / "fx-never-ready").exists(), "a real run started"
    assert not (batch / "plan.json").exists()


def test_the_smoke_run_is_the_batch_s_own_experiment_with_the_tool_s_spec_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Swagger-2 tool (LlamaRestTest) gets the Swagger 2 copy in its smoke run too, as in its real
    runs; the budget is preflight_seconds and the folder BATCH/preflight/<api>."""
    from remote_runner.batch import driver
    from remote_runner.batch.settings import Settings
    from remote_runner.experiment import catalog as catalog_mod
    from remote_runner.experiment import lifecycle as experiment
    from remote_runner.experiment import specs
    from tests.runner.conftest import FIXTURES

    cat = catalog_mod.load(FIXTURES / "formats")
    api = next(iter(cat.apis))
    batch = tmp_path / "batch-x"
    copies, problems = specs.collect(batch, cat, [api], None, formats={"swagger2"})  # type: ignore[arg-type]
    assert problems == []
    seen = []
    monkeypatch.setattr(experiment, "run", lambda spec, _docker, _stop: seen.append(spec) or "outcome")
    smoke = driver._smoke_runner(
        Settings(preflight_seconds=7.0), cat, batch, copies, None, threading.Event(), smoke_id="s", driver="d"
    )
    folder = batch / "preflight" / api
    assert smoke(RunKey(0, api, "fx-swagger2-reader"), folder) == "outcome"
    (spec,) = seen
    assert spec.tool_spec_file == specs.copy_for(batch, api, "swagger2") and spec.tool_spec_file is not None
    assert b'"swagger"' in spec.tool_spec_file.read_bytes()
    assert spec.budget_seconds == 7.0 and spec.run_dir == folder and spec.batch == "batch-x-preflight"
