"""The cumulative series of one run: a row every ``STEP`` requests, as RESTgym's
``cumulative_results`` table (SeUniVr/RESTgym ``src/process_results.py``, ``compute_cumulative_results``:
a row every 100 interactions, with the coverage of that moment).

Each row holds, after the first ``requests`` requests in arrival order: the time of the last of them
(mid-point of its request and response, seconds from the run's start), the status counts, the
operations covered and with 5xx, both unique-failure counts (ours and RESTgym's), and line, branch
and method coverage of the last coverage sample at or before that moment, with how long before it
that sample was taken (``coverage_gap``; ``gap_over_limit`` when over ``MAX_GAP_SECONDS`` or there is
no sample yet). RESTgym takes the sample nearest in time, which may come after the request: at 18-32
requests/s (ARAT-RL) a sample 2.5 s later credits coverage 45-80 requests early (issue 22); a sample
at or before never looks ahead. Given the budget, rows whose moment falls after ``start + budget``
(requests of the stop grace) and samples outside ``[start, start + budget]`` are left out. Pure: the
inputs are the per-request facts :mod:`remote_runner.analysis.results` already computed.

Beside the request-based figures, time-based ones on the same rule (:func:`coverage_at`,
:func:`time_area`): coverage at 10, 30 and 60 minutes and the area under the coverage-over-time curve.

The report compares tools at each API's smallest request count (:func:`row_at`) and by the areas
under these curves (:func:`areas`: RESTgym's plain sum of the rows up to that count).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

from remote_runner.analysis.metrics import CoverageSample, Operation, Request

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
    budget: float | None = None,
) -> tuple[tuple[float | int | bool | None, ...], ...]:
    """Rows (in :data:`COLUMNS` order) after every ``step`` requests. ``operations[i]`` is request
    i's matched operation, ``new_failure[i]`` whether it opened a group of our definition,
    ``restgym_bucket[i]`` its RESTgym bucket (None unless a 5xx). ``budget`` (seconds): rows after
    ``start + budget`` and samples outside the window are left out; None keeps every row."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    n = len(requests)
    if not len(operations) == len(new_failure) == len(restgym_bucket) == n:
        raise ValueError("one operation, failure flag and bucket per request")
    end = None if budget is None else start + budget
    ordered = sorted(in_window(samples, start, budget), key=lambda s: s.epoch)
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
        if end is not None and moment > end:
            break  # arrival order: every later row is after the budget too
        line = branch = method = gap = None
        k = bisect.bisect_right(epochs, moment) - 1  # the last sample at or before the moment
        if k >= 0:
            sample = ordered[k]
            gap = round(moment - sample.epoch, 3)
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


def in_window(samples: Sequence[CoverageSample], start: float, budget: float | None) -> list[CoverageSample]:
    """The samples taken within ``[start, start + budget]`` (all from ``start`` on without a budget)."""
    end = math.inf if budget is None else start + budget
    return [s for s in samples if start <= s.epoch <= end]


#: the minutes at which coverage is read off the time axis (LlamaRestTest and ARAT-RL report 10, 30
#: and 60 minutes of their one-hour runs)
MINUTES = (10, 30, 60)
KINDS = ("line", "branch", "method")


def _kinds(sample: CoverageSample) -> dict[str, float | None]:
    return {
        "line": _ratio(sample.line_covered, sample.line_missed),
        "branch": _ratio(sample.branch_covered, sample.branch_missed),
        "method": _ratio(sample.method_covered, sample.method_missed),
    }


def coverage_at(
    samples: Sequence[CoverageSample], start: float, seconds: float, budget: float
) -> dict[str, float | None] | None:
    """Coverage at ``seconds`` after ``start``: the last sample at or before that moment (within the
    window). None when the moment is past the budget or no sample came before it."""
    if seconds > budget:
        return None
    before = [s for s in in_window(samples, start, budget) if s.epoch <= start + seconds]
    if not before:
        return None
    return _kinds(max(before, key=lambda s: s.epoch))


def time_area(samples: Sequence[CoverageSample], start: float, budget: float) -> dict[str, float | None]:
    """Area under each coverage-over-time curve over ``[start, start + budget]`` divided by the budget
    (the mean coverage over the run, 0..1): coverage is a step function, each sample's value holding
    until the next; before the first sample it counts as 0 (nothing measured yet, the same for every
    tool). None for a kind no sample measured, or without samples in the window."""
    window = sorted(in_window(samples, start, budget), key=lambda s: s.epoch)
    out: dict[str, float | None] = {}
    for kind in KINDS:
        points = [(s.epoch, v) for s in window if (v := _kinds(s)[kind]) is not None]
        if not points or budget <= 0:
            out[kind] = None
            continue
        area = 0.0
        for (t, v), (t_next, _) in zip(points, [*points[1:], (start + budget, 0.0)], strict=True):
            area += v * (t_next - t)
        out[kind] = area / budget
    return out


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
