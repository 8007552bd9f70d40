"""How sure a ranking is: confidence intervals over seeds and paired tests between methods (numpy, scipy).

No torch, no pandas: tables and figures call these on plain numbers.

- `mean_ci`: mean +- half_width with half_width = t_{(1+level)/2, n-1} * s / sqrt(n), s the sample standard
  deviation (ddof=1), t Student's quantile with n-1 degrees of freedom.
- `paired_pvalue`: methods run on the same seeds see the same data and the same warm start, so seeds are
  pairs and the test is on the differences d_s = a_s - b_s (two-sided). With fewer than 6 pairs the paired
  t-test (`scipy.stats.ttest_rel`: t = mean(d) / (sd(d) / sqrt(n)), n-1 dof); from 6 pairs the Wilcoxon
  signed-rank test (`scipy.stats.wilcoxon`, zero differences discarded, scipy's default exact/asymptotic
  choice), which assumes no normality. Below 6 pairs Wilcoxon cannot reach p < 0.05 at all: its smallest
  two-sided p is 2 / 2^n (0.0625 for n = 5), hence the switch.
- `ties_with_best`: which methods cannot be told apart from the best one at the 5% level.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.stats

TESTS = ("auto", "t", "wilcoxon")
WILCOXON_FROM = 6  # pairs; "auto" uses the paired t-test below this
# Differences are rounded to this many decimals: accuracies are in [0, 1] and 0.7 - 0.6 != 0.8 - 0.7 in
# floating point, which would otherwise turn identical improvements into t ~ 1e15.
DECIMALS = 12


@dataclass(frozen=True)
class MeanCI:
    mean: float
    std: float  # sample standard deviation, ddof=1; NaN for n < 2
    half_width: float  # t quantile * std / sqrt(n); NaN for n < 2
    lo: float  # mean - half_width
    hi: float  # mean + half_width
    n: int  # values used (NaNs dropped)
    level: float


@dataclass(frozen=True)
class PairedTest:
    p: float  # two-sided p-value; NaN when fewer than 2 pairs
    test: str  # "t", "wilcoxon", or "none" when not tested
    n: int  # pairs used (pairs with a NaN on either side dropped)


@dataclass(frozen=True)
class Tie:
    p: float  # paired p-value against the best method; NaN for the best itself and for untested methods
    test: str  # "t", "wilcoxon", "best", or "none" (fewer than 2 paired seeds)
    tied: bool  # the best, or p >= alpha
    n: int  # seeds paired with the best (for the best: its own seeds with a value)
    best: bool


def _finite(values: object) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def mean_ci(values: object, level: float = 0.95) -> MeanCI:
    """Mean, sample std and the Student-t confidence interval of the mean; NaNs are dropped first."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    x = _finite(values)
    n = x.size
    mean = float(np.mean(x)) if n else math.nan
    if n < 2:
        return MeanCI(mean, math.nan, math.nan, math.nan, math.nan, n, level)
    std = float(np.std(x, ddof=1))
    half = float(scipy.stats.t.ppf((1 + level) / 2, n - 1) * std / math.sqrt(n))
    return MeanCI(mean, std, half, mean - half, mean + half, n, level)


def _pairs(a: object, b: object) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return np.round(a[keep] - b[keep], DECIMALS)  # (n,) differences


def paired_pvalue(a: object, b: object, test: str = "auto") -> PairedTest:
    """Two-sided p-value that a and b (paired by position, e.g. by seed) have the same centre.

    test: "auto" (paired t-test below 6 pairs, Wilcoxon signed-rank from 6), "t" or "wilcoxon".
    Pairs with a NaN on either side are dropped. Fewer than 2 pairs: p NaN, test "none". All differences
    zero (identical samples): p = 1.0. Under the t-test, equal non-zero differences (zero spread) give
    p = 0.0, the limit of t -> infinity.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    d = _pairs(a, b)
    n = d.size
    if n < 2:
        return PairedTest(math.nan, "none", n)
    name = test if test != "auto" else ("t" if n < WILCOXON_FROM else "wilcoxon")
    if np.all(d == 0):
        return PairedTest(1.0, name, n)
    if name == "t":
        if np.all(d == d[0]):
            return PairedTest(0.0, name, n)
        p = scipy.stats.ttest_rel(d, np.zeros(n)).pvalue  # same as ttest_rel(a, b), without float noise
    else:
        p = scipy.stats.wilcoxon(d, zero_method="wilcox").pvalue
    return PairedTest(float(p), name, n)


def ties_with_best(table: Mapping[str, Mapping[Hashable, float]], higher_is_better: bool,
                   alpha: float = 0.05, test: str = "auto") -> dict[str, Tie]:
    """Per method: is it statistically tied with the best one?

    table maps method -> {seed: value}. The best method has the highest (or lowest) mean over its seeds
    (NaNs dropped; on equal means the first in the table wins). Every other method is paired with it on
    the seeds both have a value for and tested with `paired_pvalue`; it is tied when p >= alpha. A method
    with fewer than 2 seeds in common with the best is *not tested*: p NaN, test "none", tied False (no
    evidence either way is not a tie). A method without any value is not tested either. The best itself
    has p NaN, test "best", tied True.
    """
    means = {m: mean_ci(list(seeds.values())).mean for m, seeds in table.items()}
    ranked = [m for m in table if not math.isnan(means[m])]
    if not ranked:
        return {m: Tie(math.nan, "none", False, 0, False) for m in table}
    pick = max if higher_is_better else min
    best = pick(ranked, key=lambda m: means[m])  # max/min return the first of equal keys
    out = {}
    for method, seeds in table.items():
        if method == best:
            out[method] = Tie(math.nan, "best", True, int(_finite(list(seeds.values())).size), True)
            continue
        common = [s for s in seeds if s in table[best]]
        result = paired_pvalue([seeds[s] for s in common], [table[best][s] for s in common], test)
        tied = result.test != "none" and result.p >= alpha
        out[method] = Tie(result.p, result.test, tied, result.n, False)
    return out
