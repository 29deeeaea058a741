"""The rehearsal's scenarios under pytest (docs/rehearsal.md): each boots VM-shaped boxes, deploys and
destroys with the real provider, and prints its timeline and box-minutes after the last run (-s shows
them; they are also in the captured output of a failure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rehearsal.scenarios import RehearsalFailure, run_scenario

pytestmark = [pytest.mark.docker, pytest.mark.sshd, pytest.mark.emulator, pytest.mark.slow]

GUARD_CALL = "guard_containers() {\n  block_metadata_for_containers\n}"


def log(text: str) -> None:
    print(text, flush=True)


@pytest.mark.timeout(900)
def test_one_vm_up_batch_power_off_destroy(tmp_path: Path, docker_engine: str) -> None:
    timeline = run_scenario("one-vm", tmp_path, log)
    marks = timeline.marks
    for name in ("boot", "startup ready", "deploy", "first run", "last run", "power-off"):
        assert name in marks, f"{name} missing from the timeline"
    assert marks["boot"] < marks["startup ready"] < marks["deploy"] < marks["first run"] < marks["last run"]
    assert marks["power-off"] >= marks["last run"]
    # The VM powers itself off once the results are uploaded: well under a minute after the last run.
    assert timeline.box_minutes_after_last_run is not None
    assert timeline.box_minutes_after_last_run < 1.5


@pytest.mark.timeout(600)
def test_removing_the_metadata_guard_fails_the_rehearsal(tmp_path: Path, docker_engine: str) -> None:
    """The startup script without its metadata guard: the rehearsal must say that a container read the
    token, naming the guard."""

    def without_guard(script: str) -> str:
        assert GUARD_CALL in script, "the startup script no longer has the guard call this test removes"
        return script.replace(GUARD_CALL, "guard_containers() {\n  : # removed by the rehearsal test\n}")

    with pytest.raises(RehearsalFailure, match=r"metadata guard .*missing or does not work"):
        run_scenario("one-vm", tmp_path, log, startup_patch=without_guard)


@pytest.mark.timeout(1200)
def test_cluster_worker_killed_mid_run(tmp_path: Path, docker_engine: str) -> None:
    timeline = run_scenario("cluster", tmp_path, log)
    marks = timeline.marks
    for name in ("boot", "startup ready", "deploy", "first run", "last run", "resize", "power-off"):
        assert name in marks, f"{name} missing from the timeline"
    assert marks["resize"] <= marks["power-off"]
    assert timeline.box_minutes_after_last_run is not None
    assert timeline.box_minutes_after_last_run < 5


@pytest.mark.timeout(1200)
def test_spot_vm_preempted_and_started_by_its_schedule(tmp_path: Path, docker_engine: str) -> None:
    timeline = run_scenario("spot", tmp_path, log)
    marks = timeline.marks
    for name in ("startup ready", "deploy", "preempt", "restart", "startup ready again", "power-off"):
        assert name in marks, f"{name} missing from the timeline"
    assert marks["preempt"] < marks["restart"] < marks["startup ready again"] < marks["power-off"]
    # Every run exactly once is checked by the scenario (the journal in the bucket); the last run ended
    # after the restart, so the batch resumed on the restarted VM rather than ending before the stop.
    assert marks["last run"] > marks["restart"]
    assert marks["wake after batch"] < marks["off again"]
    assert timeline.box_minutes_after_last_run is not None


@pytest.mark.timeout(1200)
def test_cluster_exit_paths_leave_nothing_running(tmp_path: Path, docker_engine: str) -> None:
    timeline = run_scenario("exit-paths", tmp_path, log)
    marks = timeline.marks
    for name in ("(a) resize", "(a) head off", "(b) head stop", "(b) resize", "(b) workers gone"):
        assert name in marks, f"{name} missing from the timeline"
    # (a) the head gave up, released the group and then powered off; (b) its stop released the group.
    assert marks["(a) resize"] <= marks["(a) head off"]
    assert marks["(b) head stop"] <= marks["(b) resize"] <= marks["(b) workers gone"]
    assert timeline.box_minutes_after_last_run is not None
    assert timeline.box_minutes_after_last_run < 10
