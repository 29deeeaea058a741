"""The pure parts of one experiment: outcome classification and moving failed attempts aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_runner.experiment.docker_runtime import ContainerState
from remote_runner.experiment.lifecycle import classify, set_aside


def state(exit_code: int = 0, oom: bool = False, running: bool = False) -> ContainerState:
    return ContainerState("c", running, exit_code, oom, "running" if running else "exited", "", "", "")


BASE = dict(
    interrupted=False, ready=True, not_ready_reason=None, api_died_early=False, tool_ended_early=False
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("succeeded", None)),
        ({"tool": state(137, oom=True), "tool_ended_early": True}, ("failed", "tool out of memory")),
        ({"api": state(137, oom=True), "api_died_early": True}, ("failed", "api out of memory")),
        ({"tool": state(3), "tool_ended_early": True}, ("failed", "tool crashed (exit 3)")),
        ({"tool": state(0), "tool_ended_early": True}, ("succeeded", None)),
        ({"api": state(1), "api_died_early": True}, ("failed", "api exited early (exit 1)")),
        (
            {"ready": False, "not_ready_reason": "api not ready after 3 s"},
            ("failed", "api not ready after 3 s"),
        ),
        ({"interrupted": True}, ("interrupted", "runner stopped")),
        ({"interrupted": True, "tool": state(137, oom=True)}, ("failed", "tool out of memory")),
        # stopped at the budget: SIGKILL after the grace period (137) is not a failure
        ({"tool": state(137), "api": state(143)}, ("succeeded", None)),
    ],
)
def test_classify(changes, expected):
    args = {**BASE, "api": state(0), "tool": state(0), **changes}
    assert classify(**args) == expected


def test_set_aside_moves_the_whole_attempt(tmp_path: Path):
    run = tmp_path / "run-1"
    assert set_aside(run, 1) is None  # nothing yet
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "api.log").write_text("a")
    (run / "metadata.json").write_text("{}")
    first = set_aside(run, 1)
    assert first == run / "attempts" / "attempt-1"
    assert sorted(p.name for p in run.iterdir()) == ["attempts"]
    assert (first / "logs" / "api.log").read_text() == "a" and (first / "metadata.json").is_file()
    (run / "metadata.json").write_text("{}")
    assert set_aside(run, 1) == run / "attempts" / "attempt-1.2"  # never overwrites an earlier one
    assert set_aside(run, 2) is None
