"""Rebuild remote_runner/cloud/price_table.py from a CSV in skypilot-catalog's ``vms.csv`` format.

    .venv/bin/python scripts/refresh_prices.py PATH/TO/vms.csv --as-of 2026-12-07 \
        --source "skypilot-org/skypilot-catalog catalogs/v7/gcp/vms.csv at commit 017e2502"

The CSV is read from the path given; this script downloads nothing (fetch the file yourself, e.g.
from github.com/skypilot-org/skypilot-catalog, which copies Google's Cloud Billing SKU catalogue
daily). Columns used: InstanceType, vCPUs, MemoryGiB, Region, AvailabilityZone, Price (on demand,
USD/h), SpotPrice (USD/h). Rows with an accelerator are ignored.

For every machine type of :data:`WANTED` and every region of ``--regions``:

- a row of that type in that region gives its prices (the same in every zone of the region in the
  catalogue; the highest is kept if they ever differ) and its zones;
- otherwise, when another size of the same shape (e.g. ``n2d-standard-224`` for ``n2d-standard-32``)
  has a row in that region, the prices are that size's scaled by vCPUs (Google prices these shapes
  per vCPU and GB, with a fixed GB per vCPU in a shape, so the scaling is exact up to rounding), and
  the entry says ``derived_from``; the largest size present is the base;
- otherwise the type is not offered there and gets no entry (``hourly_usd`` then refuses it).

The output is a Python module (the runner reads it on the head without any file beside it).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "remote_runner" / "price_table.py"
#: the regions docs/cluster.md recommends (us-central1: Google's reference region; us-east5: the
#: cheapest n2d spot figure in REFERENCE.md) and one in Europe
DEFAULT_REGIONS = ("us-central1", "us-east5", "europe-west4")
#: shape -> the sizes (vCPUs) the stack accepts
WANTED: dict[str, tuple[int, ...]] = {
    "n1-standard": (4, 8, 16, 32, 64, 96),
    "n2-standard": (4, 8, 16, 32, 48, 64, 80, 96, 128),
    "n2d-standard": (4, 8, 16, 32, 48, 64, 96, 128, 224),
    "c3-standard": (4, 8, 22, 44, 88, 176),
    "e2-standard": (4, 8, 16, 32),
}


@dataclass(frozen=True)
class Row:
    name: str
    vcpus: int
    memory_gb: float
    region: str
    zone: str
    on_demand: float
    spot: float


@dataclass(frozen=True)
class Entry:
    name: str
    region: str
    on_demand: float
    spot: float
    vcpus: int
    memory_gb: float
    derived_from: str | None
    zones: tuple[str, ...]


def read_rows(lines: Iterable[str]) -> list[Row]:
    rows = []
    for record in csv.DictReader(lines):
        if record.get("AcceleratorName") or not record.get("Price") or not record.get("SpotPrice"):
            continue
        rows.append(
            Row(
                name=record["InstanceType"],
                vcpus=round(float(record["vCPUs"])),
                memory_gb=float(record["MemoryGiB"]),
                region=record["Region"],
                zone=record["AvailabilityZone"],
                on_demand=float(record["Price"]),
                spot=float(record["SpotPrice"]),
            )
        )
    return rows


def shape_of(name: str) -> str:
    return name.rsplit("-", 1)[0]


def build(rows: Sequence[Row], regions: Sequence[str]) -> list[Entry]:
    by_key: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_key.setdefault((row.name, row.region), []).append(row)

    def exact(name: str, region: str) -> Entry | None:
        found = by_key.get((name, region))
        if not found:
            return None
        return Entry(
            name,
            region,
            max(r.on_demand for r in found),
            max(r.spot for r in found),
            found[0].vcpus,
            found[0].memory_gb,
            None,
            tuple(sorted({r.zone for r in found})),
        )

    out = []
    for shape, sizes in WANTED.items():
        for region in regions:
            present = sorted(
                (e for e in (exact(f"{shape}-{n}", region) for n in _sizes_in(rows, shape)) if e),
                key=lambda e: e.vcpus,
            )
            for size in sizes:
                name = f"{shape}-{size}"
                entry = exact(name, region)
                if entry is None and present:
                    base = present[-1]
                    factor = size / base.vcpus
                    entry = Entry(
                        name,
                        region,
                        round(base.on_demand * factor, 5),
                        round(base.spot * factor, 5),
                        size,
                        round(base.memory_gb * factor, 2),
                        base.name,
                        base.zones,
                    )
                if entry is not None:
                    out.append(entry)
    return out


def _sizes_in(rows: Sequence[Row], shape: str) -> list[int]:
    return sorted({r.vcpus for r in rows if shape_of(r.name) == shape and r.name == f"{shape}-{r.vcpus}"})


def render(entries: Sequence[Entry], as_of: datetime.date, source: str) -> str:
    lines = [
        '"""Google Compute Engine prices per machine type and region: GENERATED by',
        'scripts/refresh_prices.py, do not edit by hand (docs/cluster.md, "Prices").',
        "",
        "Each entry: (on-demand USD/h, spot USD/h, vCPUs, memory GB, derived_from, zones). ``derived_from``",
        "None: the figures are the catalogue's row for that type and region; otherwise they are that other",
        "size's figures scaled by vCPUs (same shape, same region). Spot prices change often (Google may",
        "change them daily); recheck before quoting.",
        '"""',
        "",
        "import datetime",
        "",
        f"PRICES_AS_OF = datetime.date({as_of.year}, {as_of.month}, {as_of.day})",
        f"SOURCE = {source!r}",
        "",
        "PRICES: dict[tuple[str, str], tuple[float, float, int, float, str | None, tuple[str, ...]]] = {",
    ]
    for e in entries:
        lines.append(
            f"    ({e.name!r}, {e.region!r}): ({e.on_demand!r}, {e.spot!r}, {e.vcpus}, {e.memory_gb!r}, "
            f"{e.derived_from!r}, {e.zones!r}),"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="a vms.csv in skypilot-catalog's format (read, never fetched)")
    parser.add_argument("--as-of", required=True, type=datetime.date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--source", required=True, help="where the CSV came from (repository, path, commit)")
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS), help="comma-separated regions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    with args.csv.open(encoding="utf-8", newline="") as handle:
        entries = build(read_rows(handle), regions)
    if not entries:
        print(f"{args.csv}: no row for any wanted machine type in {', '.join(regions)}", file=sys.stderr)
        return 1
    args.out.write_text(render(entries, args.as_of, args.source), encoding="utf-8")
    derived = sum(1 for e in entries if e.derived_from)
    print(f"{args.out}: {len(entries)} prices ({derived} scaled from another size)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
