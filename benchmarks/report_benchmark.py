"""How long do summaries and the report take? Builds a synthetic batch of N runs (default 1,000:
10 APIs x 4 tools x 25 repetitions) with real traffic.sqlite and coverage/series.csv files, then times
write_run_summary for every run, write_batch_summary and build_report, and prints the time per run.
build_report is timed --repeat times (default 5) and the median is the figure held against the
target; the first build also pays for importing matplotlib, the others show what the builds vary by on
a shared machine.

    .venv/bin/python benchmarks/report_benchmark.py [--runs 1000] [--budget 300] [--rate 3] [--repeat 5]
                                                   [--keep DIR]

Each synthetic run has budget x rate requests (900 by default) and a coverage sample every 5 s.
Generating the files is not timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from remote_runner.analysis import results  # noqa: E402
from remote_runner.analysis.report import document as report  # noqa: E402
from tests.results.factory import PETSTORE_SPEC, synthetic_run  # noqa: E402

TARGET_REPORT_MS = 10.0
TOOLS = (("llamaresttest", 0.8), ("arat-rl", 0.6), ("evomaster", 0.5), ("schemathesis", 0.3))


def make_batch(root: Path, runs: int, budget: float, rate: float) -> tuple[Path, Path]:
    spec = root / "spec.json"
    spec.write_text(json.dumps(PETSTORE_SPEC), encoding="utf-8")
    batch = root / "batch-20261129T000000Z"
    apis = [f"api-{i:02d}" for i in range(10)]
    per_cell = max(1, runs // (len(apis) * len(TOOLS)))
    made = 0
    for api in apis:
        for tool, skill in TOOLS:
            for n in range(1, per_cell + 1):
                if made >= runs:
                    break
                synthetic_run(
                    batch / api / tool / f"run-{n}", seed=made, budget=budget, rate=rate, skill=skill
                )
                made += 1
    return batch, spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per synthetic run")
    parser.add_argument("--rate", type=float, default=3.0, help="requests per second per synthetic run")
    parser.add_argument("--repeat", type=int, default=5, help="build the report this many times")
    parser.add_argument("--keep", type=Path, default=None, help="build the batch here and keep it")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="report-benchmark-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        batch, spec = make_batch(root, args.runs, args.budget, args.rate)
        run_dirs = results.find_run_dirs(batch)
        print(
            f"generated {len(run_dirs)} runs ({args.budget * args.rate:.0f} requests each) "
            f"in {time.perf_counter() - t0:.1f} s (not timed)"
        )

        t1 = time.perf_counter()
        for run_dir in run_dirs:
            results.write_run_summary(run_dir, spec, args.budget)
        t2 = time.perf_counter()
        results.write_batch_summary(batch)
        t3 = time.perf_counter()
        builds = []
        for _ in range(max(1, args.repeat)):
            b0 = time.perf_counter()
            report.build_report(batch)
            builds.append(time.perf_counter() - b0)
        t4 = t3 + statistics.median(builds)

        n = len(run_dirs)
        print(f"write_run_summary:   {t2 - t1:8.2f} s total, {1000 * (t2 - t1) / n:7.2f} ms per run")
        print(f"write_batch_summary: {t3 - t2:8.2f} s total, {1000 * (t3 - t2) / n:7.2f} ms per run")
        print("build_report, each:  " + ", ".join(f"{1000 * b / n:.2f}" for b in builds) + " ms per run")
        print(f"build_report:        {t4 - t3:8.2f} s total, {1000 * (t4 - t3) / n:7.2f} ms per run (median)")
        print(f"summary + report:    {t4 - t1:8.2f} s total, {1000 * (t4 - t1) / n:7.2f} ms per run")
        per_run = 1000 * (t4 - t3) / n
        verdict = "met" if per_run <= TARGET_REPORT_MS else "NOT met"
        print(f"target (issue 14): build_report <= {TARGET_REPORT_MS:g} ms per run (median): {verdict}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
