"""A cap while spending (``max_cost_usd``, the stack's ``maxCostUsd``): the head tracks what the batch
has cost so far and admits no run the cap cannot pay for (docs/cluster.md, "The cap").

What is counted: the head's hours since the batch was created (it runs throughout) and the worker
group's hours at the size the runner last asked for or read back (the group is the runner's: created
at 0, sized by :func:`remote_runner.placement.workers.request_workers`, released by ``release_workers``),
times the stack's ``cost_rates`` (USD per hour, from its price table). Disks, addresses and the registry's
storage are left out (a few percent; docs/cluster.md lists them).

Admission: one more run is admitted only while ``spent + (running + 1) x per_run <= cap``, where
``per_run`` is a run's share of a worker for its budget (``budget x worker rate / slots``). When the
cap admits nothing and nothing runs, the batch stops (exit :data:`~remote_runner.common.exit_codes.
CAP_REACHED`), the group is released and ``status`` says so. A resumed batch goes on counting from
what it had spent (journal meta ``spend_usd``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_runner.common import clock, jsonfile

log = logging.getLogger("remote_runner.cloud.spend")

STATUS_FILE = "spend.json"
#: seconds between two writes of the spend to the journal and spend.json
PERSIST_SECONDS = 10.0


@dataclass(frozen=True)
class Rates:
    head_usd_per_hour: float
    worker_usd_per_hour: float


def per_run_usd(rates: Rates, budget_seconds: float, slots: int) -> float:
    """One run's share of a worker for its budget (pure)."""
    return budget_seconds / 3600.0 * rates.worker_usd_per_hour / max(1, slots)


def affordable(cap: float, spent: float, running: int, per_run: float) -> int:
    """How many more runs the cap pays for with ``running`` under way (pure)."""
    if per_run <= 0:
        return 1_000_000
    return max(0, math.floor((cap - spent) / per_run + 1e-9) - running)


class SpendMeter:
    def __init__(
        self,
        rates: Rates,
        cap_usd: float,
        per_run: float,
        *,
        size: Callable[[], int],
        store: Any,
        batch_dir: Path,
        now: Callable[[], float] = clock.now,
    ) -> None:
        self.rates, self.cap, self.per_run = rates, cap_usd, per_run
        self.size = size
        self.store = store
        self.batch_dir = batch_dir
        self.now = now
        self._lock = threading.Lock()
        self.spent = float(store.meta("spend_usd") or 0.0)
        self._at = now()
        self._persisted = -1e18

    def tick(self, runs_left: int = 0) -> float:
        """Adds the spend since the last tick at today's rates; persists it now and then."""
        with self._lock:
            now = self.now()
            hours = max(0.0, now - self._at) / 3600.0
            self.spent += hours * (
                self.rates.head_usd_per_hour + self.size() * self.rates.worker_usd_per_hour
            )
            self._at = now
            if now - self._persisted >= PERSIST_SECONDS:
                self._persisted = now
                self.store.set_meta("spend_usd", repr(self.spent))
                self._write(runs_left)
            return self.spent

    def limit(self, running: int, runs_left: int) -> int:
        """How many more runs may be admitted now."""
        return affordable(self.cap, self.tick(runs_left), running, self.per_run)

    def _write(self, runs_left: int) -> None:
        doc = {
            "updated": clock.utc_iso(),
            "spent_usd": round(self.spent, 4),
            "cap_usd": self.cap,
            "per_run_usd": round(self.per_run, 4),
            "runs_left": runs_left,
            "rest_usd": round(runs_left * self.per_run, 4),
        }
        jsonfile.write(self.batch_dir / STATUS_FILE, doc)

    def flush(self, runs_left: int) -> None:
        self._persisted = -1e18
        self.tick(runs_left)


def read_status(batch_dir: Path) -> dict[str, Any] | None:
    return jsonfile.read(batch_dir / STATUS_FILE)


def status_line(doc: dict[str, Any]) -> str:
    cap, left = doc.get("cap_usd", 0.0), doc.get("runs_left", 0)
    return (
        f"spend: ${doc.get('spent_usd', 0):.2f} of a ${cap:.2f} cap (maxCostUsd); the {left} runs left "
        f"need about ${doc.get('rest_usd', 0):.2f} more (as of {doc.get('updated', '?')})"
    )
