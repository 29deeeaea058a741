"""scripts/refresh_prices.py: the price table rebuilt from a CSV in skypilot-catalog's vms.csv format
(the figures below are made up for the test; the real table's source is in its SOURCE)."""

from __future__ import annotations

import datetime
import importlib.util
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "refresh_prices.py"
HEADER = (
    "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,"
    "Region,AvailabilityZone,Price,SpotPrice\n"
)
ROWS = [
    "n2d-standard-224,224.0,896.0,,,,us-central1,us-central1-a,22.4,4.48",
    "n2d-standard-224,224.0,896.0,,,,us-central1,us-central1-b,22.4,4.48",
    "n2d-standard-32,32.0,128.0,,,,us-central1,us-central1-a,3.3,0.7",
    "n2d-standard-32,32.0,128.0,,,,us-central1,us-central1-b,3.3,0.7",
    "n1-standard-8,8.0,30.0,,,,us-central1,us-central1-f,0.8,0.2",
    "a2-highgpu-1g,12.0,85.0,A100,1,,us-central1,us-central1-a,3.0,1.0",
    "n2d-standard-32,32.0,128.0,,,,asia-east1,asia-east1-a,9.9,9.9",
]


def _refresh() -> object:
    spec = importlib.util.spec_from_file_location("refresh_prices", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["refresh_prices"] = module
    spec.loader.exec_module(module)
    return module


def test_rows_are_taken_as_they_are_and_missing_sizes_scaled_from_the_largest(tmp_path: Path) -> None:
    csv = tmp_path / "vms.csv"
    csv.write_text(HEADER + "\n".join(ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "price_table.py"
    refresh = _refresh()
    assert (
        refresh.main(
            [
                str(csv),
                "--as-of",
                "2030-01-02",
                "--source",
                "test rows",
                "--regions",
                "us-central1",
                "--out",
                str(out),
            ]
        )
        == 0
    )  # type: ignore[attr-defined]
    table = runpy.run_path(str(out))
    assert table["PRICES_AS_OF"] == datetime.date(2030, 1, 2) and table["SOURCE"] == "test rows"
    prices = table["PRICES"]
    # a row of its own: its figures and zones, not derived (not scaled from n2d-standard-224's 0.1/vCPU)
    assert prices[("n2d-standard-32", "us-central1")] == (
        3.3,
        0.7,
        32,
        128.0,
        None,
        ("us-central1-a", "us-central1-b"),
    )
    # no row: the largest size of the shape in the region, scaled by vCPUs, and said so
    assert prices[("n2d-standard-96", "us-central1")] == (
        9.6,
        1.92,
        96,
        384.0,
        "n2d-standard-224",
        ("us-central1-a", "us-central1-b"),
    )
    assert prices[("n1-standard-96", "us-central1")][:5] == (9.6, 2.4, 96, 360.0, "n1-standard-8")
    # only the regions asked for; accelerators ignored; no shape without any row (c3, e2, n2)
    assert {region for _, region in prices} == {"us-central1"}
    assert not [name for name, _ in prices if name.split("-")[0] in ("c3", "e2", "n2", "a2")]


def test_a_csv_without_any_wanted_row_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "vms.csv"
    csv.write_text(HEADER + ROWS[5] + "\n", encoding="utf-8")
    out = tmp_path / "price_table.py"
    assert _refresh().main([str(csv), "--as-of", "2030-01-02", "--source", "x", "--out", str(out)]) == 1  # type: ignore[attr-defined]
    assert "no row for any wanted machine type" in capsys.readouterr().err
    assert not out.exists()
