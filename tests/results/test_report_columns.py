"""tables.CumulativeColumns and report's coverage arrays (issue 24: the report in bounded memory)
give what the row dicts gave: cumulative.row_at / cumulative.areas on the same rows."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_runner.analysis import cumulative
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import tables

NUMBER = st.one_of(
    st.integers(min_value=0, max_value=300_000),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.none(),
)
ODD = st.one_of(NUMBER, st.booleans(), st.just("x"), st.just(math.inf))


@st.composite
def series_rows(draw: st.DrawFn) -> list[list[object]]:
    n = draw(st.integers(min_value=0, max_value=25))
    odd = draw(st.booleans())  # summaries not written by write_run_summary: any JSON value anywhere
    rows = []
    for i in range(1, n + 1):
        row: list[object] = [i * 100, float(i)]
        row += [draw(ODD if odd else st.integers(0, 10**6)) for _ in range(9)]  # counts
        row += [draw(ODD if odd else st.one_of(st.floats(0.0, 1.0), st.none())) for _ in range(3)]  # coverage
        row += [0.5, False]
        if odd and draw(st.booleans()):
            row[0] = draw(ODD)
        rows.append(row)
    return rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=series_rows(), point=st.integers(min_value=0, max_value=2600))
def test_columns_give_what_the_row_dicts_gave(rows: list[list[object]], point: int) -> None:
    dicts = cumulative.as_dicts(rows)
    columns = tables.CumulativeColumns.of(list(cumulative.COLUMNS), rows)
    # rows as write_run_summary writes them have an integer request count; a damaged summary's rows
    # without one are no rows to the columns (the dicts matched 100.0 or True against a count)
    clean = all(isinstance(r[0], int) and not isinstance(r[0], bool) for r in rows)
    want_row = cumulative.row_at(dicts if clean else [d for d in dicts if type(d["requests"]) is int], point)
    got_row = columns.row_at(point)
    assert (got_row is None) == (want_row is None)
    if want_row is not None and got_row is not None:
        for key in cumulative.METRIC_COLUMNS:  # what AtPoint reads: numbers, None for anything else
            assert got_row[key] == tables._series_num(want_row[key]), key
    want = cumulative.areas(dicts if clean else [d for d in dicts if type(d["requests"]) is int], point)
    got = columns.areas(point)
    for key in cumulative.METRIC_COLUMNS:
        w = want[key]
        if w is not None and math.isnan(w):  # inf - inf in a damaged summary: no area either way
            assert got[key] is None, key
        else:
            assert got[key] == w, key


def test_columns_are_exact_and_compact_on_written_rows() -> None:
    rows = [
        [i * 100, i * 1.5, i * 30, i * 60, i * 10, i, 0, 5, 2, 3, 4, i / 7, i / 9, None, 0.2, False]
        for i in range(1, 1441)
    ]
    columns = tables.CumulativeColumns.of(list(cumulative.COLUMNS), rows)
    assert columns.metrics["status_2xx"].dtype == np.float32  # counts: exact in float32
    assert columns.metrics["line_coverage"].dtype == np.float64  # fractions: kept whole
    assert columns.row_at(144_000) == {
        c: (None if v is None else float(v))
        for c, v in zip(cumulative.COLUMNS, rows[-1], strict=True)
        if c in cumulative.METRIC_COLUMNS
    }
    assert columns.areas(50_000) == cumulative.areas(cumulative.as_dicts(rows), 50_000)


def test_coverage_array_keeps_what_the_tuples_kept() -> None:
    points = [[0, 0.1, None, 0.3], [5.0, True, 0.2, "x"], ["t", 0.5, 0.5, 0.5], [10, math.inf, 1, 0], [1, 2]]
    got = tables._series_array(points)
    want = [[0.0, 0.1, math.nan, 0.3], [5.0, math.nan, 0.2, math.nan], [10.0, math.nan, 1.0, 0.0]]
    np.testing.assert_array_equal(got, np.array(want))
