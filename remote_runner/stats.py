"""The statistics a tool comparison reports (as in FuzzBench reports), implemented here so the report
runs anywhere with the standard library; the tests check them against scipy on the same numbers.

- :func:`mann_whitney_u`: two-sided Mann-Whitney U test. Like ``scipy.stats.mannwhitneyu`` with its
  defaults (``method='auto'``, ``use_continuity=True``): the exact null distribution when at least
  one sample has at most 8 values and there are no ties; otherwise the normal approximation with tie
  correction and continuity correction. The statistic returned is U of the first sample.
- :func:`a12`: Vargha-Delaney A12, the probability that a value from the first sample is larger than
  one from the second (ties count half); 0.5 means no difference.
- :func:`median`, :func:`quantile`, :func:`iqr`: linear interpolation between order statistics
  (numpy's default, "type 7").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
