from __future__ import annotations

from pathlib import Path

from remote_runner.batch import journal, status
from remote_runner.batch.plan import expand
from remote_runner.common import clock
from tests.runner.conftest import cli


class FakeClock(clock.Clock):
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def make_batch(results: Path) -> Path:
    batch = results / "batch-20261129T230000Z"
    batch.mkdir(parents=True)
    j = journal.Journal(batch / "journal.sqlite")
    keys = expand(("blog", "scs"), ("llamaresttest",), 2)
    j.add_runs(keys)
    j.set_meta("created", "1000.0")
    j.start_attempt(keys[0], "")
    j.succeed(keys[0])
    j.start_attempt(keys[1], "")
    j.fail_attempt(keys[1], "x", 1)
    j.start_attempt(keys[2], "")
    j.close()
    return batch


def test_counts_pairs_elapsed_and_eta(tmp_path: Path):
    previous = clock.use(FakeClock(1000.0))
    try:
        batch = make_batch(tmp_path)
        clock.use(FakeClock(1600.0))
        doc = status.snapshot(batch)
    finally:
        clock.use(previous)
    assert doc["counts"] == {"pending": 1, "running": 1, "succeeded": 1, "failed": 1, "interrupted": 0}
    assert doc["per_pair"]["llamaresttest x blog"] == {
        "pending": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "interrupted": 0,
    }
    assert doc["elapsed_seconds"] == 600.0
    assert doc["eta_seconds"] == 600.0  # 2 of 4 done in 600 s
    assert not doc["finished"]
    text = status.text(doc)
    assert "batch batch-20261129T230000Z: 4 runs" in text and "llamaresttest x scs" in text
    assert status.newest_batch(tmp_path) == batch


def test_status_command(tmp_path: Path):
    make_batch(tmp_path)
    res = cli("status", "--results", str(tmp_path), "--once")
    assert res.returncode == 0 and "llamaresttest x blog" in res.stdout
    missing = cli("status", "--results", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no batch found" in missing.stderr


def test_live_display_on_a_terminal(tmp_path: Path):
    """On a terminal, status draws a live table (rich) and returns once the batch is finished."""
    import shlex
    import subprocess
    import sys

    from tests.runner.conftest import ROOT, runner_env

    batch = tmp_path / "batch-20261129T230000Z"
    batch.mkdir()
    j = journal.Journal(batch / "journal.sqlite")
    keys = expand(("blog",), ("llamaresttest",), 1)
    j.add_runs(keys)
    j.set_meta("created", "1000.0")
    j.start_attempt(keys[0], "")
    j.succeed(keys[0])
    j.close()
    command = shlex.join([sys.executable, "-m", "remote_runner", "status", "--results", str(tmp_path)])
    res = subprocess.run(  # `script` gives the command a pseudo-terminal
        ["script", "-qec", command, "/dev/null"],
        cwd=ROOT,
        env={**runner_env(), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "\x1b[" in res.stdout  # drawn with terminal control sequences, not the plain text form
    assert "llamaresttest x blog" in res.stdout and "batch-20261129T230000Z" in res.stdout
