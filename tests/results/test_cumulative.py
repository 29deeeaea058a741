"""The cumulative series (RESTgym's cumulative_results) on hand-made requests and samples."""

from __future__ import annotations

import pytest

from remote_runner import cumulative
from remote_runner.metrics import CoverageSample, Operation, Request

GET = Operation("GET", "/a")


def sample(t: float, line: int) -> CoverageSample:
    return CoverageSample(t, line, 100 - line, 0, 0, 1, 1)


def test_rows_every_step_with_nearest_coverage_and_gap() -> None:
    reqs = [Request(100.0 + i, "GET", "/a", 200 if i % 2 else 500, b"", finished=100.0 + i + 0.5) for i in range(7)]
    ops = [GET] * 7
    flags = [i % 2 == 0 for i in range(7)]
    buckets = [0 if i % 2 == 0 else None for i in range(7)]
    samples = [sample(100.0, 10), sample(103.0, 20), sample(120.0, 90)]
    rows = cumulative.as_dicts(cumulative.series(reqs, ops, flags, buckets, samples, start=100.0, step=3))
    assert [r["requests"] for r in rows] == [3, 6]
    first, second = rows
    # 3rd request: 102.0 to 102.5, mid-point 102.25, nearest sample 103.0 (0.75 s away)
    assert first["seconds"] == 2.25 and first["line_coverage"] == 0.2 and first["coverage_gap"] == 0.75
    assert first["status_2xx"] == 1 and first["status_5xx"] == 2 and first["unique_failures"] == 2
    assert first["unique_failures_restgym"] == 1 and first["operations_covered"] == 1
    assert first["gap_over_limit"] is False
    # 6th request, mid-point 105.25: nearest is 103.0 (2.25 s), not 120
    assert second["coverage_gap"] == 2.25 and second["line_coverage"] == 0.2
    far = cumulative.as_dicts(cumulative.series(reqs, ops, flags, buckets, [sample(150.0, 5)], 100.0, step=3))
    assert far[0]["gap_over_limit"] is True and far[0]["coverage_gap"] == 47.75


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
