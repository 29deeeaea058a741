"""Run summaries in processes of their own (issue 24: a 200k-request run's summary takes seconds of
pure Python; in the runner's threads concurrent summaries would share one interpreter lock with the
scheduler).

- One machine: the batch's :class:`SummaryPool`, a process pool of ``pool_size`` workers (the CPUs
  kept free of experiments, ``min_free_cpus``, halved, at most 4; at least 1), so summaries never take
  the CPUs the experiments are measured on.
- Cluster mode: the node summarises the run it ran, in a child process (:func:`in_child`), uploads
  the whole folder, and hands the driver the folder without its traffic database
  (:mod:`remote_runner.placement.cluster`): the head's disk holds summaries, coverage, cumulative rows and
  logs.

Processes are started with ``spawn``: the runner has threads, which ``fork`` would copy mid-flight.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def summarise(
    run_dir: Path, spec_path: Path | None, budget_seconds: float, analysis: Any, max_tool_restarts: int | None
) -> None:
    """The body a child runs: :func:`remote_runner.analysis.results.write_run_summary` (nothing returned, so
    nothing large travels back)."""
    from remote_runner.analysis import results

    results.write_run_summary(
        run_dir, spec_path, budget_seconds, analysis=analysis, max_tool_restarts=max_tool_restarts
    )


def pool_size(min_free_cpus: float, cpus: int) -> int:
    """How many summaries at once (pure): half the CPUs kept free of experiments, at most 4."""
    return max(1, min(4, int(min_free_cpus // 2), cpus))


class SummaryPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, *args: Any) -> None:
        """Summarises one run in a worker process; waits for it; raises what the child raised."""
        self._pool.submit(summarise, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def in_child(*args: Any) -> None:
    """Summarises one run in a fresh child process and waits for it (a node's summary)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(summarise, *args).result()
