"""Metrics on hand-worked matrices (the numbers in comments are worked by hand)."""

import math

import numpy as np
import pytest

from hywu_bench import metrics

# R[i, j]: accuracy on j after training i.
R = np.array([
    [0.9, 0.1, 0.0],
    [0.6, 0.8, 0.2],
    [0.5, 0.7, 0.9],
])
b = np.array([0.1, 0.1, 0.1])


def test_average_and_learning_accuracy():
    assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)  # 0.7
    assert metrics.learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 0.9) / 3)


def test_bwt_lopez_paz():
    # 1/(T-1) * [(0.5 - 0.9) + (0.7 - 0.8)] = -0.25
    assert metrics.backward_transfer(R) == pytest.approx(-0.25)


def test_forgetting_chaudhry_uses_the_maximum():
    M = np.array([[0.9, 0.0, 0.0], [0.95, 0.8, 0.0], [0.5, 0.6, 0.9]])
    # f_0 = max(0.9, 0.95) - 0.5 = 0.45 ; f_1 = 0.8 - 0.6 = 0.2 ; mean 0.325
    assert metrics.forgetting_per_experience(M) == pytest.approx([0.45, 0.2])
    assert metrics.forgetting(M) == pytest.approx(0.325)
    # Avalanche's R[j,j] - R[T,j] would give (0.4 + 0.2) / 2 = 0.3: not what is reported.
    assert metrics.forgetting(M) != pytest.approx(0.3)


def test_forgetting_ignores_rows_before_an_experience_was_learnt():
    M = np.array([[0.9, 0.95], [0.8, 0.5]])  # R[0, 1] = 0.95 is before experience 1 was learnt
    assert metrics.forgetting(M) == pytest.approx(0.1)


def test_fwt():
    # 1/(T-1) * [(R[0,1] - b1) + (R[1,2] - b2)] = ((0.1-0.1) + (0.2-0.1)) / 2 = 0.05
    assert metrics.forward_transfer(R, b) == pytest.approx(0.05)


def test_step_interference():
    I = metrics.step_interference(R)
    assert I[1, 0] == pytest.approx(0.3)  # 0.9 -> 0.6
    assert I[2, 0] == pytest.approx(0.1)
    assert I[2, 1] == pytest.approx(0.1)
    assert np.isnan(I[0, 0]) and np.isnan(I[1, 1]) and np.isnan(I[0, 2])


def test_single_experience_gives_nan_not_an_error():
    one = np.array([[0.8]])
    s = metrics.summary(one, np.array([0.1]))
    assert s["acc"] == pytest.approx(0.8)
    assert all(math.isnan(s[k]) for k in ("bwt", "forgetting", "fwt"))


def test_joint_final_row_only():
    M = np.full((3, 3), np.nan)
    M[-1] = [0.9, 0.8, 0.7]
    assert metrics.average_accuracy(M) == pytest.approx(0.8)
    assert math.isnan(metrics.backward_transfer(M))


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        metrics.average_accuracy(np.zeros((2, 3)))


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hywu_bench.metrics, hywu_bench.results; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
