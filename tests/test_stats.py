"""Confidence intervals and paired tests against numbers worked by hand (closed forms in comments)."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hywu_bench import stats

# Student t with 2 dof has a closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so
#   t_{q, 2} = (2q - 1) sqrt(2 / (1 - (2q - 1)^2))       -> t_{0.975, 2} = 0.95 sqrt(2 / 0.0975) = 4.302653
#   two-sided p(t) = 1 - |t| / sqrt(2 + t^2)
T_975_2 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))


def test_t_quantile_closed_form():
    assert T_975_2 == pytest.approx(4.302653, abs=1e-6)


def test_mean_ci_on_three_values():
    ci = stats.mean_ci([0.6, 0.7, 0.8])
    # mean 0.7, std 0.1 (ddof=1), half width 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert (ci.mean, ci.std, ci.n) == (pytest.approx(0.7), pytest.approx(0.1), 3)
    assert ci.half_width == pytest.approx(0.248414, abs=1e-6)
    assert ci.half_width == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert (ci.lo, ci.hi) == (pytest.approx(0.451586, abs=1e-6), pytest.approx(0.948414, abs=1e-6))


def test_mean_ci_drops_nans():
    assert stats.mean_ci([0.6, np.nan, 0.7, 0.8]) == stats.mean_ci([0.6, 0.7, 0.8])


def test_mean_ci_one_value_has_no_interval():
    ci = stats.mean_ci([0.42, np.nan])
    assert ci.mean == pytest.approx(0.42) and ci.n == 1
    assert all(math.isnan(v) for v in (ci.std, ci.half_width, ci.lo, ci.hi))
    assert math.isnan(stats.mean_ci([]).mean) and stats.mean_ci([np.nan]).n == 0


def test_mean_ci_rejects_a_bad_level():
    with pytest.raises(ValueError, match="level"):
        stats.mean_ci([0.1, 0.2], level=95)


def test_paired_t_test_by_hand():
    # d = [0.1, 0.2, 0.3]: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3, 2 dof
    # p = 1 - sqrt(12) / sqrt(14) = 1 - sqrt(6/7) = 0.0741799
    result = stats.paired_pvalue([0.3, 0.5, 0.7], [0.2, 0.3, 0.4])
    assert result.test == "t" and result.n == 3
    assert result.p == pytest.approx(1 - math.sqrt(6 / 7))
    assert stats.paired_pvalue([0.2, 0.3, 0.4], [0.3, 0.5, 0.7]).p == pytest.approx(1 - math.sqrt(6 / 7))


def test_wilcoxon_from_six_pairs_exact():
    a = np.array([0.7, 0.8, 0.9, 1.0, 1.1, 1.2])
    # d = 0.1 ... 0.6, all positive: W- = 0; P(W- <= 0) = 1 / 2^6, two-sided p = 2 / 64
    result = stats.paired_pvalue(a, a - np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert result.test == "wilcoxon" and result.n == 6
    assert result.p == pytest.approx(2 / 64)
    # the smallest difference negative: W- = 1; subsets of {1..6} summing to <= 1 are {} and {1}: p = 2 * 2/64
    result = stats.paired_pvalue(a, a - np.array([-0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert result.p == pytest.approx(4 / 64)


def test_the_test_can_be_forced():
    a = np.array([0.7, 0.8, 0.9, 1.0, 1.1, 1.2])
    assert stats.paired_pvalue(a, a - 0.1 * np.arange(1, 7), test="t").test == "t"
    assert stats.paired_pvalue([0.3, 0.5, 0.7], [0.2, 0.3, 0.4], test="wilcoxon").test == "wilcoxon"
    with pytest.raises(ValueError, match="auto, t, wilcoxon"):
        stats.paired_pvalue([1, 2], [1, 2], test="mann-whitney")


@pytest.mark.parametrize("values", [[0.6, 0.7, 0.8], [0.6, 0.7, 0.8, 0.61, 0.71, 0.81, 0.9]])
def test_identical_samples_give_one_without_a_warning(values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.paired_pvalue(values, list(values)).p == 1.0


def test_equal_differences_are_not_float_noise():
    # 0.6 - 0.5, 0.7 - 0.6, 0.8 - 0.7 differ in the last bits; unrounded, scipy gives p ~ 1e-31 and a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.paired_pvalue([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]).p == 0.0


def test_pairs_with_a_nan_are_dropped():
    # pairs 1 and 3 go; what is left is the hand-worked t-test above
    result = stats.paired_pvalue([0.3, np.nan, 0.5, 0.9, 0.7], [0.2, 0.1, 0.3, np.nan, 0.4])
    assert result.n == 3 and result.p == pytest.approx(1 - math.sqrt(6 / 7))


def test_fewer_than_two_pairs_is_not_tested():
    result = stats.paired_pvalue([0.5, np.nan], [0.4, 0.3])
    assert math.isnan(result.p) and result.test == "none" and result.n == 1
    with pytest.raises(ValueError, match="same length"):
        stats.paired_pvalue([0.1, 0.2], [0.1, 0.2, 0.3])


TABLE = {
    "best": {0: 0.90, 1: 0.80, 2: 0.85},
    "close": {0: 0.80, 1: 0.60, 2: 0.55},  # d = -0.1, -0.2, -0.3: p = 0.0742 (the hand-worked case): tied
    "worse": {0: 0.50, 1: 0.41, 2: 0.44},  # d = -0.40, -0.39, -0.41: t = -69.3, p = 1 - sqrt(4800/4802)
    "other_seeds": {5: 0.70, 6: 0.70},  # no seed in common with the best
    "empty": {0: np.nan},
}


def test_ties_with_best():
    ties = stats.ties_with_best(TABLE, higher_is_better=True)
    assert ties["best"].best and ties["best"].tied and ties["best"].test == "best" and ties["best"].n == 3
    assert ties["close"].tied and ties["close"].p == pytest.approx(1 - math.sqrt(6 / 7))
    assert not ties["worse"].tied and ties["worse"].p == pytest.approx(1 - math.sqrt(4800 / 4802))
    for name in ("other_seeds", "empty"):
        assert math.isnan(ties[name].p) and ties[name].test == "none" and not ties[name].tied


def test_ties_with_best_lower_is_better():
    ties = stats.ties_with_best({"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {0: 0.2, 1: 0.4, 2: 0.6}}, False)
    assert ties["a"].best
    assert ties["b"].p == pytest.approx(1 - math.sqrt(6 / 7)) and ties["b"].tied  # d = 0.1, 0.2, 0.3
    assert not stats.ties_with_best({"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {0: 0.2, 1: 0.4, 2: 0.6}},
                                    False, alpha=0.1)["b"].tied


def test_stats_module_does_not_import_torch():
    code = "import sys, hywu_bench.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
