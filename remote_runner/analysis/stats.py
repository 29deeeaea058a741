"""The statistics a tool comparison reports (as in FuzzBench reports). The distributions and the
post-hoc tests are the libraries' (scipy, scikit-posthocs: product dependencies, issue 22): a reviewer
can check them there instead of in code of ours; the rank sums and U statistics are a few lines here.

- :func:`mann_whitney_u`: two-sided Mann-Whitney U test. Like ``scipy.stats.mannwhitneyu`` with its
  defaults (``method='auto'``, ``use_continuity=True``): the exact null distribution when at least
  one sample has at most 8 values and there are no ties; otherwise the normal approximation with tie
  correction and continuity correction. The statistic returned is U of the first sample.
- :func:`a12`: Vargha-Delaney A12, the probability that a value from the first sample is larger than
  one from the second (ties count half); 0.5 means no difference.
- :func:`median`, :func:`quantile`, :func:`iqr`: linear interpolation between order statistics
  (numpy's default, "type 7").
- :func:`pairwise`: every pair of tools of one (API, metric) family, the raw p-value (scipy) and the
  Holm-corrected one within the family (:func:`holm`, equal to
  ``scikit_posthocs.posthoc_mannwhitney(p_adjust="holm")`` on the same table, which the tests
  check), A12 and its magnitude label.

Across APIs (Demsar 2006, "Statistical comparisons of classifiers over multiple data sets", as in
FuzzBench's reports):

- :func:`friedman`: the Friedman test over a blocks x treatments table (APIs x tools), ranks within
  each API (1 = the best, i.e. the largest value; ties share their average rank), chi-square with
  ``k - 1`` degrees of freedom and the tie correction of ``scipy.stats.friedmanchisquare``;
- :func:`nemenyi`: the Nemenyi post-hoc p-values of every pair of tools
  (``scikit_posthocs.posthoc_nemenyi_friedman``: ``q = |R_i - R_j| / sqrt(k (k + 1) / (6 N))``,
  ``p = P(studentized range(k, inf) >= q sqrt 2)``); meaningful only where Friedman is significant,
  which the report says beside them;
- :func:`critical_difference`: the smallest mean-rank difference Nemenyi calls significant at
  ``alpha``, ``q_alpha sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range quantile over
  sqrt 2 (1.960, 2.344, 2.569, 2.728 for k = 2..5 at 0.05; Demsar's table truncates 2.3437 to 2.343).

The chi-square and studentized range distributions are scipy's (``scipy.stats.chi2``,
``scipy.stats.studentized_range`` with infinite degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

EXACT_MAX_SMALLER_SAMPLE = 8


@dataclass(frozen=True)
class MannWhitney:
    u: float  # U statistic of the first sample
    p_value: float  # two-sided
    method: str  # "exact" or "asymptotic"


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of the groups of tied values."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """Number of arrangements of n1 + n2 distinct values giving each U = 0..n1*n2: the coefficients of
    the Gaussian binomial coefficient [n1+n2 choose n1] in q, built by the recurrence
    c(n1, n2) = c(n1, n2-1) + q^n2 * c(n1-1, n2)."""
    if n1 == 0 or n2 == 0:
        return (1,)
    a = _u_counts(n1, n2 - 1)
    b = _u_counts(n1 - 1, n2)
    out = [0] * (n1 * n2 + 1)
    for u, c in enumerate(a):
        out[u] += c
    for u, c in enumerate(b):
        out[u + n2] += c
    return tuple(out)


def _exact_sf(u: float, n1: int, n2: int) -> float:
    """P(U >= u) under the null hypothesis (distinct values)."""
    counts = _u_counts(min(n1, n2), max(n1, n2))
    k = math.ceil(u)
    total = sum(counts)
    return sum(counts[max(k, 0) :]) / total


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of x against y (see the module docstring for the method)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    values = [float(v) for v in x] + [float(v) for v in y]
    if any(math.isnan(v) for v in values):
        raise ValueError("samples must not contain NaN")
    ranks, ties = _ranks(values)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u = max(u1, u2)
    has_ties = any(t > 1 for t in ties)
    if (n1 <= EXACT_MAX_SMALLER_SAMPLE or n2 <= EXACT_MAX_SMALLER_SAMPLE) and not has_ties:
        p = 2 * _exact_sf(u, n1, n2)
        method = "exact"
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in ties)
        sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        numerator = u - n1 * n2 / 2 - 0.5  # continuity correction towards the mean
        # every value equal (sigma 0): no evidence of a difference; else 2 * normal survival of z
        p = 1.0 if sigma == 0 else math.erfc((numerator / sigma) / math.sqrt(2))
        method = "asymptotic"
    return MannWhitney(u=u1, p_value=min(max(p, 0.0), 1.0), method=method)


def a12(x: Sequence[float], y: Sequence[float]) -> float:
    """Vargha-Delaney A12 of x over y: P(X > Y) + 0.5 * P(X = Y)."""
    if not x or not y:
        raise ValueError("both samples need at least one value")
    greater = sum(1 for a in x for b in y if a > b)
    equal = sum(1 for a in x for b in y if a == b)
    return (greater + 0.5 * equal) / (len(x) * len(y))


def a12_magnitude(value: float) -> str:
    """Vargha and Delaney's thresholds on |A12 - 0.5| scaled: negligible < 0.56 <= small < 0.64 <=
    medium < 0.71 <= large (symmetric below 0.5)."""
    d = max(value, 1 - value)
    if d < 0.56:
        return "negligible"
    if d < 0.64:
        return "small"
    if d < 0.71:
        return "medium"
    return "large"


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy.percentile's default)."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    s = sorted(float(v) for v in values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def iqr(values: Sequence[float]) -> tuple[float, float]:
    """(25th, 75th) percentiles."""
    return quantile(values, 0.25), quantile(values, 0.75)


# --- within an API: every pair of tools, Holm-corrected -------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One pair of tools on one metric of one API: the raw (uncorrected) Mann-Whitney p-value, the
    Holm-corrected one within the (API, metric) family, A12 of ``a`` over ``b`` and its magnitude."""

    a: str
    b: str
    p_raw: float
    p_holm: float
    a12: float

    @property
    def magnitude(self) -> str:
        return a12_magnitude(self.a12)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of one family's p-values (Holm 1979): sort ascending, multiply the
    i-th smallest (from 0) by ``m - i``, keep the sequence non-decreasing, cap at 1; returned in the
    input order. The same numbers as ``statsmodels``' ``multipletests(method="holm")``, which
    scikit-posthocs' ``p_adjust="holm"`` calls (the tests check both on the same tables); not called
    here because ``multipletests`` runs ``gc.collect()`` on every call: 127 ms each with matplotlib
    and pandas loaded, 23 of the 33 s a 45-run report took."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def pairwise(samples: Mapping[str, Sequence[float]]) -> dict[tuple[str, str], Pair]:
    """Every pair of the tools in ``samples`` (each with at least one value; the others are left out
    of the family): two-sided Mann-Whitney U p-values (``scipy.stats.mannwhitneyu`` with its defaults,
    as ``scikit_posthocs.posthoc_mannwhitney`` calls it), Holm-corrected over the family
    (:func:`holm`; FuzzBench's post-hoc correction). Keys are (a, b), a before b in sorted order."""
    from scipy.stats import mannwhitneyu

    kept = {t: [float(v) for v in vs] for t, vs in samples.items() if vs}
    tools = sorted(kept)
    pairs = [(a, b) for i, a in enumerate(tools) for b in tools[i + 1 :]]
    raw = [float(mannwhitneyu(kept[a], kept[b], alternative="two-sided").pvalue) for a, b in pairs]
    corrected = holm(raw)
    return {
        (a, b): Pair(a, b, r, c, a12(kept[a], kept[b]))
        for (a, b), r, c in zip(pairs, raw, corrected, strict=True)
    }


# --- across APIs: Friedman, Nemenyi, critical difference -------------------------------------------


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with ``df`` degrees of freedom (scipy)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    from scipy.stats import chi2

    return float(chi2.sf(x, df))


def studentized_range_sf(q: float, k: int) -> float:
    """P(range of k standard normals >= q): the studentized range with infinite degrees of freedom
    (scipy)."""
    if k < 2:
        raise ValueError(f"the studentized range needs k >= 2, got {k}")
    from scipy.stats import studentized_range

    return float(studentized_range.sf(q, k, math.inf))


@lru_cache(maxsize=64)
def studentized_range_ppf(p: float, k: int) -> float:
    """The q with P(range <= q) = p (scipy; cached: the report asks it once per ranked metric, always
    for the same few k, and scipy integrates numerically)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be within (0, 1), got {p}")
    if k < 2:
        raise ValueError(f"the studentized range needs k >= 2, got {k}")
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(p, k, math.inf))


@dataclass(frozen=True)
class Friedman:
    statistic: float  # chi-square, tie-corrected
    p_value: float
    mean_ranks: tuple[float, ...]  # per treatment (column); 1 = best
    blocks: int  # N: APIs
    treatments: int  # k: tools

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha


def _block_ranks(row: Sequence[float], higher_is_better: bool) -> tuple[list[float], list[int]]:
    values = [-float(v) for v in row] if higher_is_better else [float(v) for v in row]
    return _ranks(values)


def friedman(table: Sequence[Sequence[float]], *, higher_is_better: bool = True) -> Friedman:
    """Friedman test of ``table`` (one row per API, one column per tool, no missing values). The
    statistic is computed here because ``scipy.stats.friedmanchisquare`` refuses two tools; it is
    scipy's (tie-corrected) and the p-value is scipy's chi-square survival function."""
    n = len(table)
    if n < 1:
        raise ValueError("the Friedman test needs at least one block (API)")
    k = len(table[0])
    if k < 2 or any(len(row) != k for row in table):
        raise ValueError("every block needs the same number (at least 2) of treatments")
    if any(math.isnan(float(v)) for row in table for v in row):
        raise ValueError("the table must not contain NaN")
    sums = [0.0] * k
    tie_term = 0
    for row in table:
        ranks, ties = _block_ranks(row, higher_is_better)
        for j, r in enumerate(ranks):
            sums[j] += r
        tie_term += sum(t**3 - t for t in ties)
    mean_ranks = tuple(s / n for s in sums)
    chi2 = 12 / (n * k * (k + 1)) * sum(s * s for s in sums) - 3 * n * (k + 1)
    correction = 1 - tie_term / (n * k * (k * k - 1))
    if correction <= 0:  # every API ties every tool: no evidence of any difference
        return Friedman(0.0, 1.0, mean_ranks, n, k)
    chi2 /= correction
    return Friedman(chi2, chi2_sf(chi2, k - 1), mean_ranks, n, k)


def nemenyi(table: Sequence[Sequence[float]]) -> list[list[float]]:
    """Nemenyi post-hoc p-values (k x k, 1 on the diagonal) of the Friedman table (one row per API, one
    column per tool): ``scikit_posthocs.posthoc_nemenyi_friedman``. The p-values depend on the
    absolute differences of mean ranks only, so ranking high or low first gives the same matrix."""
    import numpy as np
    import scikit_posthocs as sp

    data = np.asarray(table, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2 or data.shape[0] < 1:
        raise ValueError("Nemenyi needs at least 2 treatments and 1 block")
    return [[float(v) for v in row] for row in sp.posthoc_nemenyi_friedman(data).to_numpy()]


def critical_difference(k: int, blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks at ``alpha``."""
    q_alpha = studentized_range_ppf(1 - alpha, k) / math.sqrt(2)
    return q_alpha * math.sqrt(k * (k + 1) / (6 * blocks))
