"""The forecast's model (remote_runner/batch/forecast.py): its arithmetic where it has no randomness, and
the properties a forecast must have (monotone in workers and in the preemption rate, the same figures
for the same seed, the target search), and the ``forecast`` command."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from remote_runner.batch import forecast
from remote_runner.batch.forecast import Assumptions, Batch, Cluster
from remote_runner.cli import main
from remote_runner.cloud import pricing

QUICK = Assumptions(samples=60)
FIXED = replace(QUICK, boot_jitter=0.0, samples=1)
BATCH = Batch(runs=120, budget_minutes=60, slots=2)


def cluster(workers: int, *, spot: bool = True) -> Cluster:
    return Cluster(workers, "n2d-standard-32", "e2-standard-4", "us-central1", spot)


def test_without_preemptions_the_makespan_is_the_startup_then_whole_waves_then_the_tail() -> None:
    a = FIXED
    sample = forecast.simulate(Batch(10, 60, 2), 2, 0.0, a, random.Random(1))
    startup = a.head_boot_minutes + a.image_build_minutes + a.worker_boot_minutes + a.preflight_minutes
    run = 60 + a.run_overhead_minutes
    # 10 runs on 2 x 2 slots: 3 waves, the last one on one worker only
    assert sample.makespan_minutes == pytest.approx(startup + 3 * run + a.finish_minutes)
    # billing from the request: one worker until the end of wave 3, the other released after wave 2
    request = a.head_boot_minutes + a.image_build_minutes
    billed = (startup - request + 3 * run + a.release_minutes) + (
        startup - request + 2 * run + a.release_minutes
    )
    assert sample.worker_minutes == pytest.approx(billed)
    assert (sample.busy_minutes, sample.lost_minutes, sample.preemptions) == (10 * run, 0.0, 0)


def test_a_killed_worker_loses_its_runs_which_run_again_on_its_replacement() -> None:
    a = FIXED
    calm = forecast.simulate(Batch(8, 60, 2), 2, 0.0, a, random.Random(1))
    # worker 0 killed 30 min into its first runs (startup: boot 8 + preflight 5 after the request)
    killed = forecast.simulate(Batch(8, 60, 2), 2, 0.0, a, random.Random(1), kills=((13 + 30, 0),))
    assert killed.preemptions == 1 and killed.lost_minutes == pytest.approx(2 * 30)
    # the replacement: recreated after 5 min, boots 8, takes the 2 lost runs once they are re-queued
    assert killed.makespan_minutes > calm.makespan_minutes
    assert killed.busy_minutes == calm.busy_minutes


def test_the_same_seed_gives_the_same_forecast_and_another_seed_another() -> None:
    first = forecast.forecast(BATCH, cluster(20), QUICK, (0.05,))
    again = forecast.forecast(BATCH, cluster(20), QUICK, (0.05,))
    other = forecast.forecast(BATCH, cluster(20), replace(QUICK, seed=22), (0.05,))
    assert first == again
    assert first.results != other.results


def test_more_workers_never_take_longer_and_fewer_take_longer() -> None:
    p95 = {
        n: forecast.forecast(BATCH, cluster(n), QUICK, (0.05,)).results[0].makespan_hours_p95
        for n in (5, 10, 30, 60)
    }
    assert p95[5] > p95[10] > p95[30] >= p95[60]


def test_a_higher_preemption_rate_costs_more_time_money_and_lost_runs() -> None:
    low, high = forecast.forecast(BATCH, cluster(15), QUICK, (0.005, 0.10)).results
    assert high.makespan_hours_p95 >= low.makespan_hours_p95
    assert high.cost_usd_p95 > low.cost_usd_p95 and high.cost_usd_p50 > low.cost_usd_p50
    assert high.lost_run_hours_mean > low.lost_run_hours_mean and high.preemptions_mean > low.preemptions_mean
    # on-demand workers are not preempted, whatever the rate
    od_low, od_high = forecast.forecast(BATCH, cluster(15, spot=False), QUICK, (0.005, 0.10)).results
    assert (od_low.makespan_hours_p95, od_low.cost_usd_p95) == (
        od_high.makespan_hours_p95,
        od_high.cost_usd_p95,
    )
    assert od_high.preemptions_mean == 0


def test_cost_is_the_head_and_the_workers_at_the_regions_prices_with_disks_and_addresses() -> None:
    fc = forecast.forecast(Batch(10, 60, 2), cluster(2), FIXED, (0.0,))
    sample = forecast.simulate(Batch(10, 60, 2), 2, 0.0, FIXED, random.Random(0))
    disk = 100 * 0.10 / 730
    head = pricing.hourly_usd("e2-standard-4", "us-central1", spot=False) + disk + 0.005
    worker = pricing.hourly_usd("n2d-standard-32", "us-central1", spot=True) + disk + 0.0025
    expected = sample.head_minutes / 60 * head + sample.worker_minutes / 60 * worker
    assert fc.results[0].cost_usd_p50 == pytest.approx(expected)


def test_target_hours_is_the_smallest_worker_count_that_meets_it() -> None:
    rate = 0.05
    found = forecast.workers_for(BATCH, 6.0, rate, QUICK)
    assert found is not None

    def p95(n: int) -> float:
        return forecast.forecast(BATCH, cluster(n), QUICK, (rate,)).results[0].makespan_hours_p95

    assert p95(found) <= 6.0 < p95(found - 1)
    # an hour-long run cannot finish within an hour of pulumi up: no worker count does it
    assert forecast.workers_for(BATCH, 1.0, rate, QUICK) is None


def test_assumptions_are_overridden_by_name_and_unknown_names_refused() -> None:
    a = Assumptions().with_overrides({"worker_boot_minutes": "1", "samples": "50"})
    assert (a.worker_boot_minutes, a.samples) == (1.0, 50)
    with pytest.raises(ValueError, match="unknown assumption 'boot'; known: head_boot_minutes"):
        Assumptions().with_overrides({"boot": 1})
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        Assumptions().with_overrides({"finish_minutes": -1})


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.json"
    path.write_text(
        json.dumps({"apis": ["a", "b", "c"], "tools": ["t1", "t2"], "runs": 10, "budget_seconds": 3600}),
        encoding="utf-8",
    )
    return path


def test_the_command_reads_the_batch_from_the_settings_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["forecast", "--config", str(_config(tmp_path)), "--workers", "6", "--region", "us-east5",
         "--preemption-rates", "0,10", "--assume", "samples=20", "--json"]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["batch"] == {"runs": 60, "budget_minutes": 60.0, "slots": 2}
    assert doc["cluster"]["region"] == "us-east5" and doc["assumptions"]["samples"] == 20
    assert doc["prices"]["worker_usd_per_hour"] == pricing.hourly_usd(
        "n2d-standard-32", "us-east5", spot=True
    )
    calm, stormy = doc["results"]
    assert (calm["rate_per_hour"], stormy["rate_per_hour"]) == (0.0, 0.1)
    assert calm["preemptions_mean"] == 0 < stormy["preemptions_mean"]


def test_the_command_answers_target_hours_and_prints_every_assumption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["forecast", "--config", str(_config(tmp_path)), "--runs", "4", "--target-hours", "4",
         "--preemption-rates", "2", "--assume", "samples=30"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "batch: 24 runs x 60 min, 2 per worker" in text
    for name in (
        "head_boot_minutes",
        "image_build_minutes",
        "recreate_minutes",
        "disk_usd_per_gb_month",
        "seed",
    ):
        assert f"  {name} = " in text
    (line,) = [x for x in text.splitlines() if x.startswith("workers for p95 <= 4 h at 2 %/h preemption: ")]
    workers = int(line.rsplit(": ", 1)[1].split()[0])
    assert f"cluster: {workers} x n2d-standard-32 (spot" in text


def test_the_command_reports_every_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["forecast", "--config", str(_config(tmp_path)), "--region", "us-east5",
         "--head-machine-type", "n1-standard-4", "--preemption-rates", "x", "--assume", "nope=1"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--assume: unknown assumption 'nope'" in err
    assert "--preemption-rates 'x': comma-separated percentages >= 0" in err
    assert "no price for n1-standard-4 in 'us-east5'" in err
    assert "give --workers N, or --target-hours H" in err


def test_a_baked_worker_image_boots_workers_sooner_and_starts_the_head_after_the_bake():
    a = forecast.baked(forecast.Assumptions())
    assert (
        a.worker_boot_minutes
        == forecast.BAKED_WORKER_BOOT_MINUTES
        < forecast.Assumptions().worker_boot_minutes
    )
    assert a.head_boot_minutes == max(forecast.Assumptions().head_boot_minutes, forecast.BAKE_MINUTES)
    batch, cluster = (
        forecast.Batch(60, 60.0, 2),
        forecast.Cluster(10, "n2d-standard-32", "e2-standard-4", "us-east5"),
    )
    (plain,) = forecast.forecast(batch, cluster, forecast.Assumptions(), (0.02,)).results
    (bake,) = forecast.forecast(batch, cluster, a, (0.02,)).results
    assert bake.cost_usd_p50 < plain.cost_usd_p50  # fewer idle paid boot minutes
