"""The spend cap's arithmetic (remote_runner/cloud/spend.py): pure, with a clock the test moves."""

from __future__ import annotations

import json
from pathlib import Path

from remote_runner.cloud import spend


class Store:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def meta(self, key: str) -> str | None:
        return self.values.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.values[key] = value


def test_a_run_costs_its_share_of_a_worker_for_its_budget() -> None:
    rates = spend.Rates(0.19, 1.156)
    assert spend.per_run_usd(rates, 3600, 6) == 1.156 / 6  # n1-standard-96 spot, 6 slots, 1 h
    assert spend.affordable(10.0, 9.0, 0, 0.25) == 4
    assert spend.affordable(10.0, 9.0, 3, 0.25) == 1
    assert spend.affordable(10.0, 9.9, 0, 0.25) == 0
    assert spend.affordable(10.0, 11.0, 2, 0.25) == 0


def test_the_meter_counts_the_head_and_the_group_at_its_size_and_persists(tmp_path: Path) -> None:
    now = [1000.0]
    size = [0]
    store = Store()
    meter = spend.SpendMeter(
        spend.Rates(head_usd_per_hour=3.6, worker_usd_per_hour=36.0),
        cap_usd=1.0,
        per_run=0.1,
        size=lambda: size[0],
        store=store,
        batch_dir=tmp_path,
        now=lambda: now[0],
    )
    now[0] += 100  # head only: 100 s x $3.6/h = $0.10
    assert abs(meter.tick(5) - 0.10) < 1e-9
    size[0] = 2
    now[0] += 10  # head + 2 workers: 10 s x ($3.6 + $72)/h = $0.21
    assert abs(meter.tick(5) - 0.31) < 1e-9
    assert meter.limit(running=2, runs_left=5) == 4  # (1.0 - 0.31) / 0.1 = 6.9 -> 6, minus 2 running
    meter.flush(5)
    doc = json.loads((tmp_path / "spend.json").read_text())
    assert doc["spent_usd"] == 0.31 and doc["cap_usd"] == 1.0 and doc["rest_usd"] == 0.5
    assert "spend: $0.31 of a $1.00 cap" in spend.status_line(doc)
    # a resumed batch goes on from what it had spent
    again = spend.SpendMeter(
        spend.Rates(3.6, 36.0), 1.0, 0.1, size=lambda: 0, store=store, batch_dir=tmp_path, now=lambda: now[0]
    )
    assert abs(again.spent - 0.31) < 1e-9
