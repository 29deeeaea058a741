"""The cumulative series of one run: a row every ``STEP`` requests, as RESTgym's
``cumulative_results`` table (SeUniVr/RESTgym ``src/process_results.py``, ``compute_cumulative_results``:
a row every 100 interactions, coverage from the sample nearest in time to the i-th request, a warning
when that sample is more than 5 s away).

Each row holds, after the first ``requests`` requests in arrival order: the time of the last of them
(mid-point of its request and response, seconds from the run's start), the status counts, the
operations covered and with 5xx, both unique-failure counts (ours and RESTgym's), and line, branch
and method coverage of the sample nearest in time, with that sample's distance in seconds
(``coverage_gap``; ``gap_over_limit`` when it is over ``MAX_GAP_SECONDS``). Pure: the inputs are the
per-request facts :mod:`remote_runner.results` already computed.

The report compares tools at each API's smallest request count (:func:`row_at`) and by the areas
under these curves (:func:`areas`: RESTgym's plain sum of the rows up to that count).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from remote_runner.metrics import CoverageSample, Operation, Request

STEP = 100
MAX_GAP_SECONDS = 5.0

COLUMNS = (
    "requests",
    "seconds",
    "status_2xx",
    "status_4xx",
    "status_5xx",
    "status_401",
    "status_403",
    "operations_covered",
    "operations_5xx",
    "unique_failures",
    "unique_failures_restgym",
    "line_coverage",
    "branch_coverage",
    "method_coverage",
    "coverage_gap",
    "gap_over_limit",
)
#: the columns that are metrics (compared at the smallest request count and summed into areas)
METRIC_COLUMNS = COLUMNS[2:14]


def _ratio(covered: int, missed: int) -> float | None:
    total = covered + missed
    return None if total == 0 else covered / total


def series(
    requests: Sequence[Request],
    operations: Sequence[Operation | None],
    new_failure: Sequence[bool],
    restgym_bucket: Sequence[int | None],
    samples: Sequence[CoverageSample],
    start: float,
    step: int = STEP,
) -> tuple[tuple[float | int | bool | None, ...], ...]:
    """Rows (in :data:`COLUMNS` order) after every ``step`` requests. ``operations[i]`` is request
    i's matched operation, ``new_failure[i]`` whether it opened a group of our definition,
    ``restgym_bucket[i]`` its RESTgym bucket (None unless a 5xx)."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    n = len(requests)
    if not len(operations) == len(new_failure) == len(restgym_bucket) == n:
        raise ValueError("one operation, failure flag and bucket per request")
    ordered = sorted(samples, key=lambda s: s.epoch)
    epochs = [s.epoch for s in ordered]
    rows: list[tuple[float | int | bool | None, ...]] = []
    c2 = c4 = c5 = c401 = c403 = ours = 0
    covered: set[Operation] = set()
    with_5xx: set[Operation] = set()
    buckets: set[int] = set()
    for i, (r, op, new, bucket) in enumerate(
        zip(requests, operations, new_failure, restgym_bucket, strict=True), start=1
    ):
        s = r.status
        if s is not None:
            if 200 <= s < 300:
                c2 += 1
                if op is not None:
                    covered.add(op)
            elif 400 <= s < 500:
                c4 += 1
                c401 += s == 401
                c403 += s == 403
            elif 500 <= s < 600:
                c5 += 1
                if op is not None:
                    with_5xx.add(op)
        ours += new
        if bucket is not None:
            buckets.add(bucket)
        if i % step:
            continue
        moment = (r.started + r.finished) / 2 if r.finished is not None else r.started
        line = branch = method = gap = None
        if ordered:
            k = bisect.bisect_left(epochs, moment)
            near = min(
                (j for j in (k - 1, k) if 0 <= j < len(ordered)), key=lambda j: abs(epochs[j] - moment)
            )
            sample = ordered[near]
            gap = round(abs(sample.epoch - moment), 3)
            line = _ratio(sample.line_covered, sample.line_missed)
            branch = _ratio(sample.branch_covered, sample.branch_missed)
            method = _ratio(sample.method_covered, sample.method_missed)
        rows.append(
            (
                i,
                round(moment - start, 3),
                c2,
                c4,
                c5,
                c401,
                c403,
                len(covered),
                len(with_5xx),
                ours,
                len(buckets),
                line,
                branch,
                method,
                gap,
                gap is None or gap > MAX_GAP_SECONDS,
            )
        )
    return tuple(rows)


def as_dicts(rows: Sequence[Sequence[object]]) -> list[dict[str, object]]:
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def comparison_point(smallest_requests: int, step: int = STEP) -> int | None:
    """The request count the tools of an API are compared at: the smallest run's count rounded down
    to a row of the series (RESTgym needs it to be a row); ``None`` below one step."""
    point = (smallest_requests // step) * step
    return point if point >= step else None


def row_at(rows: Sequence[Mapping[str, object]], requests: int) -> Mapping[str, object] | None:
    """The series row at exactly ``requests`` requests, if the run reached it."""
    for row in rows:
        if row.get("requests") == requests:
            return row
    return None


def areas(rows: Sequence[Mapping[str, object]], up_to: int) -> dict[str, float | None]:
    """Area under each metric's curve up to ``up_to`` requests: the sum of its rows (RESTgym's
    ``SUM(...) WHERE interaction_number <= minimum``; times the step it is the Riemann sum).
    ``None`` for a metric missing from any of those rows (coverage without samples)."""
    out: dict[str, float | None] = {}
    kept = [row for row in rows if isinstance(row.get("requests"), int) and row["requests"] <= up_to]  # type: ignore[operator]
    for col in METRIC_COLUMNS:
        values = [v for row in kept if isinstance(v := row.get(col), int | float) and not isinstance(v, bool)]
        # a curve with holes (rows without coverage) has no comparable area
        out[col] = float(sum(values)) if values and len(values) == len(kept) else None
    return out
