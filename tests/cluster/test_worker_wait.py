"""The wait for a cluster's first worker and the head's power-off rule (remote_runner/placement/workers.py,
remote_runner/cloud/shutdown.py): pure, with time that passes only when the code sleeps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from remote_runner.cloud import shutdown
from remote_runner.placement import workers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_waiting_reports_n_of_m_then_returns_when_a_worker_joins(tmp_path: Path) -> None:
    clock = Clock()
    joined = iter([0] * 40 + [2])  # 40 polls of 2 s (80 s) with nobody, then two workers
    waited = workers.wait_for_workers(
        lambda: next(joined),
        give_up_seconds=600,
        stop=threading.Event(),
        expected=lambda: 8,
        batch_dir=tmp_path,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert waited == workers.Waited(2, False, "")
    doc = json.loads((tmp_path / "workers.json").read_text())
    assert doc["state"] == "joined" and doc["joined"] == 2 and "after 1.3 min" in doc["message"]


def test_the_waiting_line_says_how_many_of_how_many_and_for_how_long(tmp_path: Path) -> None:
    clock = Clock()
    seen: list[str] = []

    def joined() -> int:
        doc = workers.read_status(tmp_path)
        if doc:
            seen.append(doc["message"])
        return 1 if clock.now >= 130 else 0

    workers.wait_for_workers(
        joined,
        give_up_seconds=1800,
        stop=threading.Event(),
        expected=lambda: 8,
        batch_dir=tmp_path,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert "0 of 8 workers joined, waiting 0 min (gives up in 30 min: worker_wait_seconds)" in seen
    assert "0 of 8 workers joined, waiting 1 min (gives up in 29 min: worker_wait_seconds)" in seen
    assert workers.status_line({"message": "m", "updated": "t"}) == "workers: m (as of t)"


def test_no_worker_ever_gives_up_at_the_configured_time(tmp_path: Path) -> None:
    clock = Clock()
    waited = workers.wait_for_workers(
        lambda: 0,
        give_up_seconds=300,
        stop=threading.Event(),
        expected=lambda: None,  # no worker group (an existing cluster): "N workers joined"
        batch_dir=tmp_path,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert waited.gave_up and waited.joined == 0 and "worker_wait_seconds (300 s)" in waited.message
    assert 300 <= clock.now < 303
    assert json.loads((tmp_path / "workers.json").read_text())["message"].startswith("0 workers joined")


def test_a_stop_ends_the_wait_without_giving_up() -> None:
    stop = threading.Event()
    stop.set()
    waited = workers.wait_for_workers(lambda: 0, give_up_seconds=10, stop=stop, sleep=lambda _s: None)
    assert not waited.gave_up and waited.joined == 0


def test_a_group_size_that_cannot_be_read_only_costs_the_message(tmp_path: Path) -> None:
    clock = Clock()

    def broken() -> int | None:
        raise RuntimeError("403")

    joined = iter([0, 0, 1])
    waited = workers.wait_for_workers(
        lambda: next(joined),
        give_up_seconds=60,
        stop=threading.Event(),
        expected=broken,
        batch_dir=tmp_path,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert waited.joined == 1
    assert json.loads((tmp_path / "workers.json").read_text())["message"].startswith("1 workers joined after")


def test_the_head_stays_up_while_the_group_does_not_read_zero() -> None:
    base = dict(
        shutdown_when_done=True, runs_total=4, runs_finished=4, upload_configured=True, upload_pending=0
    )
    assert shutdown.should_power_off(**base, workers_released=True).power_off  # type: ignore[arg-type]
    assert shutdown.should_power_off(**base).power_off  # type: ignore[arg-type]  # one VM: no group
    kept = shutdown.should_power_off(**base, workers_released=False)  # type: ignore[arg-type]
    assert not kept.power_off and "worker group does not read 0" in kept.reason


def test_release_without_a_group_does_nothing() -> None:
    from remote_runner.batch.settings import Settings

    assert workers.release_workers(Settings(), "test") is None
