"""shutdownWhenDone: the pure decision, and the command power_off runs (through an injected runner, so
the test machine stays on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from remote_runner.cloud import shutdown
from remote_runner.common.process import ProcessResult


@pytest.mark.parametrize(
    ("kwargs", "expected", "reason_part"),
    [
        ({"shutdown_when_done": False}, False, "off"),
        ({"runs_finished": 9}, False, "1 of 10 runs not finished"),
        ({"upload_pending": 3}, False, "3 files not uploaded"),
        ({}, True, "finished and uploaded"),
        ({"upload_configured": False, "upload_pending": 5}, True, "no upload configured"),
        ({"runs_total": 0, "runs_finished": 0}, True, "finished"),
    ],
)
def test_should_power_off(kwargs: dict[str, Any], expected: bool, reason_part: str) -> None:
    args: dict[str, Any] = {
        "shutdown_when_done": True,
        "runs_total": 10,
        "runs_finished": 10,
        "upload_configured": True,
        "upload_pending": 0,
    } | kwargs
    decision = shutdown.should_power_off(**args)
    assert decision.power_off is expected
    assert bool(decision) is expected
    assert reason_part in decision.reason


def test_power_off_runs_systemctl_poweroff_through_the_runner() -> None:
    seen: list[Sequence[str]] = []

    def runner(argv: Sequence[str], **kw: Any) -> ProcessResult:
        seen.append(argv)
        assert kw.get("timeout") == 60
        return ProcessResult(returncode=0, output="", timed_out=False)

    assert shutdown.power_off(runner).ok
    assert seen == [["systemctl", "poweroff"]]


def test_power_off_failure_is_returned_not_raised() -> None:
    # a command that really runs and fails, through the real process.execute
    res = shutdown.power_off(command=["false"])
    assert not res.ok and res.returncode == 1


def _finished_journal(tmp_path):  # type: ignore[no-untyped-def]
    from remote_runner.batch import journal
    from remote_runner.experiment.run_key import RunKey

    jour = journal.Journal(tmp_path / "journal.sqlite")
    key = RunKey(1, "api", "tool")
    jour.add_runs([key])
    jour.start_attempt(key, "")
    jour.succeed(key)
    return jour


def test_a_batch_found_finished_at_start_holds_its_power_off_until_stopped(tmp_path, monkeypatch):
    """`pulumi destroy` starts a stopped VM for its final upload; the runner, resuming the finished
    batch at boot, must not power it off under the upload (the rehearsal found it did): it waits, and
    a stop (the deploy stops the unit) cancels the power-off; without a stop it powers off after the
    hold."""
    import threading

    from remote_runner.batch import driver
    from remote_runner.cloud import shutdown
    from remote_runner.common.process import ProcessResult
    from remote_runner.batch.settings import Settings

    calls: list[str] = []
    monkeypatch.setattr(shutdown, "power_off", lambda: calls.append("off") or ProcessResult(0, "", False))
    settings = Settings(shutdown_when_done=True, results=tmp_path)
    jour = _finished_journal(tmp_path)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    driver._finish_batch(tmp_path, settings, jour, hold_seconds=30.0, stop=stop)
    assert calls == []  # stopped during the hold: no power-off
    driver._finish_batch(tmp_path, settings, jour, hold_seconds=0.1, stop=threading.Event())
    assert calls == ["off"]
    jour.close()
