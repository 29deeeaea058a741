"""Our statistics against scipy, scikit-posthocs and statsmodels on the same numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from remote_runner.analysis import stats

CASES = [
    # exact: no ties, a small sample
    ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    ([0.31, 0.35, 0.29, 0.40, 0.33], [0.27, 0.26, 0.30, 0.28, 0.25]),
    ([5.0], [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]),
    (list(range(8)), [x + 0.5 for x in range(20)]),  # one side <= 8, other large: still exact
    # ties: asymptotic with tie and continuity correction
    ([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]),
    (
        [12.0, 12.0, 13.0, 11.0, 12.0, 14.0, 12.0, 12.0, 13.0, 12.0],
        [11.0, 11.0, 12.0, 10.0, 11.0, 11.0, 12.0, 11.0, 9.0, 11.0],
    ),
    # both samples > 8 without ties: asymptotic
    ([float(x) for x in range(10)], [x + 0.25 for x in range(3, 15)]),
    # everything equal: no evidence at all
    ([4.0, 4.0, 4.0], [4.0, 4.0]),
    ([1.0], [2.0]),
]


@pytest.mark.parametrize(("x", "y"), CASES)
def test_mann_whitney_matches_scipy(x: list[float], y: list[float]) -> None:
    ours = stats.mann_whitney_u(x, y)
    ref = mannwhitneyu(x, y, alternative="two-sided")
    assert ours.u == pytest.approx(float(ref.statistic))
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)


def test_method_choice_follows_scipy_auto() -> None:
    assert stats.mann_whitney_u([1, 2, 3], [4, 5, 6]).method == "exact"
    assert stats.mann_whitney_u([1, 2, 2], [4, 5, 6]).method == "asymptotic"
    assert stats.mann_whitney_u(list(range(9)), [x + 0.5 for x in range(9)]).method == "asymptotic"
    assert stats.mann_whitney_u(list(range(8)), [x + 0.5 for x in range(30)]).method == "exact"


def test_hand_checked_exact_value() -> None:
    # x entirely above y, n1 = n2 = 3: P(U >= 9) = 1/C(6,3) = 1/20, two-sided 0.1
    res = stats.mann_whitney_u([4, 5, 6], [1, 2, 3])
    assert res.u == 9.0
    assert res.p_value == pytest.approx(0.1)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=14),
    st.lists(st.integers(0, 30), min_size=1, max_size=14),
)
def test_mann_whitney_matches_scipy_on_random_samples(x: list[int], y: list[int]) -> None:
    ours = stats.mann_whitney_u(x, y)
    ref = mannwhitneyu(x, y, alternative="two-sided")
    assert ours.u == pytest.approx(float(ref.statistic))
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-7, abs=1e-12)


def test_a12_hand_checked() -> None:
    assert stats.a12([3, 4], [1, 2]) == 1.0
    assert stats.a12([1, 2], [3, 4]) == 0.0
    assert stats.a12([1, 2], [1, 2]) == 0.5
    # pairs: (2,1)>, (2,2)=, (2,3)<, (3,1)>, (3,2)>, (3,3)= -> (3 + 0.5*2)/6
    assert stats.a12([2, 3], [1, 2, 3]) == pytest.approx(4 / 6)
    assert stats.a12_magnitude(0.5) == "negligible"
    assert stats.a12_magnitude(0.3) == "medium"
    assert stats.a12_magnitude(0.9) == "large"


@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=12),
    st.lists(st.integers(0, 20), min_size=1, max_size=12),
)
def test_a12_is_u_over_n1n2(x: list[int], y: list[int]) -> None:
    ref = mannwhitneyu(x, y, alternative="two-sided")
    assert stats.a12(x, y) == pytest.approx(float(ref.statistic) / (len(x) * len(y)))


@settings(max_examples=100)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30))
def test_median_and_iqr_match_numpy(values: list[float]) -> None:
    assert stats.median(values) == pytest.approx(float(np.median(values)), abs=1e-6)
    q1, q3 = stats.iqr(values)
    assert q1 == pytest.approx(float(np.percentile(values, 25)), abs=1e-6)
    assert q3 == pytest.approx(float(np.percentile(values, 75)), abs=1e-6)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        stats.mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        stats.mann_whitney_u([float("nan")], [1.0])
    with pytest.raises(ValueError):
        stats.median([])


# --- across APIs: Friedman, Nemenyi, critical difference (against scipy and scikit-posthocs) ------


def test_chi2_and_studentized_range_match_scipy() -> None:
    import numpy as np
    import scipy.stats as ss

    for x, df in [(0.5, 1), (3.2, 2), (10.0, 3), (40.0, 7), (0.01, 4), (100.0, 2)]:
        assert stats.chi2_sf(x, df) == pytest.approx(float(ss.chi2.sf(x, df)), rel=1e-9, abs=1e-15)
    for q, k in [(2.77, 2), (3.31, 3), (3.63, 4), (1.0, 5), (5.0, 10)]:
        ref = float(ss.studentized_range.sf(q, k, np.inf))
        assert stats.studentized_range_sf(q, k) == pytest.approx(ref, abs=1e-9)
    # Demsar (2006), table 5(a): q_0.05 for k = 2..5 (his 2.343 is 2.3437 truncated)
    got = [stats.studentized_range_ppf(0.95, k) / 2**0.5 for k in (2, 3, 4, 5)]
    assert got == pytest.approx([1.960, 2.3437, 2.569, 2.728], abs=1e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_friedman_and_nemenyi_match_scipy_and_scikit_posthocs(seed: int) -> None:
    import numpy as np
    import scikit_posthocs as sp
    import scipy.stats as ss

    rng = np.random.default_rng(seed)
    data = rng.random((7, 4)).round(1)  # rounding makes ties within APIs
    res = stats.friedman(data.tolist())
    ref = ss.friedmanchisquare(*data.T)
    assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
    assert res.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
    # rank 1 = the highest value
    ascending = ss.rankdata(-data, axis=1).mean(axis=0)
    assert res.mean_ranks == pytest.approx(tuple(ascending))
    ours = np.array(stats.nemenyi(data.tolist()))
    theirs = sp.posthoc_nemenyi_friedman(data).to_numpy()
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_friedman_with_two_tools_and_full_ties() -> None:
    # two tools: Friedman is the sign test's chi-square, df 1 (scipy refuses k < 3)
    res = stats.friedman([[3, 1], [5, 2], [1, 4]])
    n, k = 3, 2
    sums = [1 + 1 + 2, 2 + 2 + 1]
    chi2 = 12 / (n * k * (k + 1)) * sum(s * s for s in sums) - 3 * n * (k + 1)
    assert res.statistic == pytest.approx(chi2) and res.mean_ranks == pytest.approx((4 / 3, 5 / 3))
    tied = stats.friedman([[1, 1], [2, 2]])
    assert tied.p_value == 1.0 and tied.mean_ranks == (1.5, 1.5)
    with pytest.raises(ValueError):
        stats.friedman([[1, 2], [3]])


def test_critical_difference() -> None:
    # Demsar's formula: q_alpha * sqrt(k (k + 1) / (6 N)); 4 tools over 10 APIs
    assert stats.critical_difference(4, 10) == pytest.approx(2.569 * (4 * 5 / 60) ** 0.5, abs=2e-3)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_holm_corrected_p_equals_scikit_posthocs_on_the_same_table(seed: int) -> None:
    """Four tools x 10 runs of one (API, metric): each pair's Holm p is scikit-posthocs' Holm over the
    family, its raw p is scipy's Mann-Whitney U, and Holm never lowers a p-value."""
    import numpy as np
    import pandas as pd
    import scikit_posthocs as sp
    import scipy.stats as ss
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    samples = {t: (rng.random(10) + shift).round(2).tolist() for t, shift in zip("wxyz", (0, 0.1, 0.3, 0.6))}
    got = stats.pairwise(samples)
    frame = pd.DataFrame(
        {"v": [v for t in samples for v in samples[t]], "g": [t for t in samples for _ in samples[t]]}
    )
    theirs = sp.posthoc_mannwhitney(frame, val_col="v", group_col="g", p_adjust="holm")
    pairs = list(itertools.combinations(sorted(samples), 2))
    assert sorted(got) == pairs
    raw = [float(ss.mannwhitneyu(samples[a], samples[b]).pvalue) for a, b in pairs]
    by_hand = multipletests(raw, method="holm")[1]
    for (a, b), r, h in zip(pairs, raw, by_hand, strict=True):
        assert got[(a, b)].p_holm == pytest.approx(float(theirs.loc[a, b]), rel=1e-12)
        assert got[(a, b)].p_holm == pytest.approx(float(h), rel=1e-12)
        assert got[(a, b)].p_raw == pytest.approx(r, rel=1e-9)
        assert got[(a, b)].p_holm >= got[(a, b)].p_raw
    # the strongest pair (w vs z) is significant after correction; its magnitude label is "large"
    assert got[("w", "z")].p_holm < 0.05 and got[("w", "z")].magnitude == "large"


def test_pairwise_leaves_tools_without_values_out_of_the_family() -> None:
    got = stats.pairwise({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "c": []})
    assert list(got) == [("a", "b")]
    assert got[("a", "b")].p_holm == got[("a", "b")].p_raw  # a family of one: nothing to correct
    assert stats.pairwise({"a": [1.0], "b": []}) == {}
