"""The cumulative series (RESTgym's cumulative_results) on hand-made requests and samples."""

from __future__ import annotations

import pytest

from remote_runner.analysis import cumulative
from remote_runner.analysis.metrics import CoverageSample, Operation, Request

GET = Operation("GET", "/a")


def sample(t: float, line: int) -> CoverageSample:
    return CoverageSample(t, line, 100 - line, 0, 0, 1, 1)


def test_each_row_takes_the_last_sample_at_or_before_its_request() -> None:
    """The hand-made series: samples at 100 s (10 %), 103 s (20 %) and 120 s (90 %)."""
    reqs = [
        Request(100.0 + i, "GET", "/a", 200 if i % 2 else 500, b"", finished=100.0 + i + 0.5)
        for i in range(7)
    ]
    ops = [GET] * 7
    flags = [i % 2 == 0 for i in range(7)]
    buckets = [0 if i % 2 == 0 else None for i in range(7)]
    samples = [sample(100.0, 10), sample(103.0, 20), sample(120.0, 90)]
    rows = cumulative.as_dicts(cumulative.series(reqs, ops, flags, buckets, samples, start=100.0, step=3))
    assert [r["requests"] for r in rows] == [3, 6]
    first, second = rows
    # 3rd request: 102.0 to 102.5, mid-point 102.25: the 103.0 sample is nearer (0.75 s) but later, so
    # the row takes 100.0 (2.25 s before), never a sample taken after the request
    assert first["seconds"] == 2.25 and first["line_coverage"] == 0.1 and first["coverage_gap"] == 2.25
    assert first["status_2xx"] == 1 and first["status_5xx"] == 2 and first["unique_failures"] == 2
    assert first["unique_failures_restgym"] == 1 and first["operations_covered"] == 1
    assert first["gap_over_limit"] is False
    # 6th request, mid-point 105.25: the last sample at or before is 103.0 (2.25 s before), not 120
    assert second["coverage_gap"] == 2.25 and second["line_coverage"] == 0.2
    # a row exactly at a sample's moment takes that sample (gap 0)
    exact = [Request(102.5, "GET", "/a", 200, b"", finished=103.5)]
    at = cumulative.as_dicts(cumulative.series(exact, [GET], [False], [None], samples, 100.0, step=1))
    assert at[0]["line_coverage"] == 0.2 and at[0]["coverage_gap"] == 0.0
    # only a later sample: no coverage yet, flagged (RESTgym's nearest rule took the 150 s one)
    later = cumulative.as_dicts(
        cumulative.series(reqs, ops, flags, buckets, [sample(150.0, 5)], 100.0, step=3)
    )
    assert later[0]["line_coverage"] is None and later[0]["coverage_gap"] is None
    assert later[0]["gap_over_limit"] is True
    # the last earlier sample is far away: flagged over the 5 s limit (6th request at 105.25 s)
    old = cumulative.as_dicts(cumulative.series(reqs, ops, flags, buckets, [sample(100.0, 5)], 100.0, step=3))
    assert old[1]["coverage_gap"] == 5.25 and old[1]["gap_over_limit"] is True


def test_rows_and_samples_outside_the_budget_window_are_left_out() -> None:
    # 10 requests a second for 8 s; a 5 s budget from 100.0: requests of the stop grace make no row
    reqs = [Request(100.0 + i / 10, "GET", "/a", 200, b"", finished=100.0 + i / 10) for i in range(80)]
    samples = [sample(99.0, 50), sample(101.0, 10), sample(104.0, 30), sample(106.0, 95)]
    rows = cumulative.as_dicts(
        cumulative.series(reqs, [GET] * 80, [False] * 80, [None] * 80, samples, 100.0, step=10, budget=5.0)
    )
    assert [r["requests"] for r in rows] == [10, 20, 30, 40, 50]  # the 50th request is at 104.9 s
    # the sample before the start (99 s) is not the run's: the first row, at 100.9 s, has none
    assert rows[0]["line_coverage"] is None
    # rows at 101.9, 102.9, 103.9 and 104.9 s: never the 106 s sample of the stop grace
    assert [r["line_coverage"] for r in rows[1:]] == [0.1, 0.1, 0.1, 0.3]
    assert cumulative.in_window(samples, 100.0, 5.0) == samples[1:3]


def test_time_based_coverage_and_area() -> None:
    minute = 60.0
    samples = [
        sample(1000.0 + 5 * minute, 20),
        sample(1000.0 + 20 * minute, 40),
        sample(1000.0 + 61 * minute, 99),
    ]
    # at 10 min: the 5-minute sample; at 30 min: the 20-minute one; at 60 min: still it (61 is past)
    assert cumulative.coverage_at(samples, 1000.0, 10 * minute, 3600.0) == {
        "line": 0.2,
        "branch": None,
        "method": 0.5,
    }
    assert cumulative.coverage_at(samples, 1000.0, 30 * minute, 3600.0)["line"] == 0.4  # type: ignore[index]
    assert cumulative.coverage_at(samples, 1000.0, 60 * minute, 3600.0)["line"] == 0.4  # type: ignore[index]
    assert cumulative.coverage_at(samples, 1000.0, 60 * minute, 1800.0) is None  # past a 30 min budget
    assert cumulative.coverage_at(samples, 1000.0, 4 * minute, 3600.0) is None  # no sample yet
    # area over 60 min / 60 min: 0 for 5 min, 0.2 for 15 min, 0.4 for 40 min; the 61 min one is out
    area = cumulative.time_area(samples, 1000.0, 3600.0)
    assert area["line"] == pytest.approx((0.2 * 15 + 0.4 * 40) / 60)
    assert area["branch"] is None and area["method"] == pytest.approx(55 / 60 * 0.5)
    assert cumulative.time_area([], 1000.0, 3600.0) == {"line": None, "branch": None, "method": None}


def test_comparison_point_row_and_areas() -> None:
    assert cumulative.comparison_point(99) is None
    assert cumulative.comparison_point(250) == 200
    rows = [
        {"requests": 100, "line_coverage": 0.1, "status_2xx": 5},
        {"requests": 200, "line_coverage": 0.3, "status_2xx": 9},
        {"requests": 300, "line_coverage": None, "status_2xx": 12},
    ]
    assert cumulative.row_at(rows, 200) == rows[1] and cumulative.row_at(rows, 250) is None
    area = cumulative.areas(rows, 200)
    assert area["line_coverage"] == pytest.approx(0.4) and area["status_2xx"] == 14
    assert cumulative.areas(rows, 300)["line_coverage"] is None  # a hole: no comparable area
    with pytest.raises(ValueError):
        cumulative.series([], [], [], [GET], [], 0.0)
