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
    interference = metrics.step_interference(R)
    assert interference[1, 0] == pytest.approx(0.3)  # 0.9 -> 0.6
    assert interference[2, 0] == pytest.approx(0.1)
    assert interference[2, 1] == pytest.approx(0.1)
    assert np.isnan(interference[0, 0]) and np.isnan(interference[1, 1]) and np.isnan(interference[0, 2])


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


def test_average_incremental_accuracy_rebuffi():
    # A_0 = 0.9 ; A_1 = (0.6 + 0.8) / 2 = 0.7 ; A_2 = (0.5 + 0.7 + 0.9) / 3 = 0.7 ; AIA = 2.3 / 3
    # (R[0, 1] = 0.1 and R[0, 2], R[1, 2] are experiences not yet seen: not in the mean)
    assert metrics.average_incremental_accuracy(R) == pytest.approx(2.3 / 3)


def test_plasticity_floor():
    assert metrics.plasticity_floor(R) == pytest.approx(0.8)  # min(0.9, 0.8, 0.9)


def test_summary_has_aia_and_plasticity_floor():
    s = metrics.summary(R, b)
    assert s["aia"] == pytest.approx(2.3 / 3)
    assert s["plasticity_floor"] == pytest.approx(0.8)


def test_aia_and_floor_on_one_experience_and_on_joint():
    one = metrics.summary(np.array([[0.8]]))
    assert one["aia"] == pytest.approx(0.8) and one["plasticity_floor"] == pytest.approx(0.8)
    M = np.full((3, 3), np.nan)
    M[-1] = [0.9, 0.8, 0.7]
    joint = metrics.summary(M)
    assert math.isnan(joint["aia"]) and math.isnan(joint["plasticity_floor"])


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        metrics.average_accuracy(np.zeros((2, 3)))


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hywu_bench.metrics, hywu_bench.results; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# A continual-evaluation curve, T = 3 (NaN: not evaluated).
#   n  iteration  training  E0    E1    E2
#   0     10         0      0.50  nan   nan    before any update counts for nothing
#   1     20         0      0.90  0.10  0.00   end of experience 0 (R[0])
#   2     30         1      0.40  0.60  nan    stability gap on E0
#   3     40         1      0.70  0.80  0.10   end of experience 1 (R[1])
#   4     50         2      0.60  0.30  0.50   stability gap on E1
#   5     60         2      0.65  0.75  0.90   end of the stream (R[2])
CURVE = metrics.EvaluationCurve(
    iterations=np.array([10, 20, 30, 40, 50, 60]),
    experience_at=np.array([0, 0, 1, 1, 2, 2]),
    acc=np.array([
        [0.50, np.nan, np.nan],
        [0.90, 0.10, 0.00],
        [0.40, 0.60, np.nan],
        [0.70, 0.80, 0.10],
        [0.60, 0.30, 0.50],
        [0.65, 0.75, 0.90],
    ]),
)


def test_min_acc_de_lange():
    # E0 after learnt (n = 2..5): min(0.40, 0.70, 0.60, 0.65) = 0.40 ; E1 (n = 4, 5): min(0.30, 0.75) = 0.30
    assert metrics.min_acc_per_experience(CURVE)[:2] == pytest.approx([0.40, 0.30])
    assert np.isnan(metrics.min_acc_per_experience(CURVE)[2])
    # min-ACC_T = 1/(T-1) * (0.40 + 0.30) = 0.35
    assert metrics.min_acc(CURVE) == pytest.approx(0.35)
    assert metrics.min_acc_curve(CURVE) == pytest.approx([np.nan, np.nan, 0.4, 0.4, 0.35, 0.35], nan_ok=True)


def test_wc_acc_de_lange():
    # end of stream, k = 3: 1/3 * a(E2) + 2/3 * min-ACC = 0.9 / 3 + 2/3 * 0.35 = 0.3 + 0.2333 = 0.5333
    assert metrics.wc_acc(CURVE) == pytest.approx(0.3 + 0.7 / 3)
    # n = 2, k = 2: 0.6 / 2 + 0.4 / 2 = 0.5 ; n = 3: 0.8 / 2 + 0.4 / 2 = 0.6
    # n = 4, k = 3: 0.5 / 3 + 2/3 * 0.35 = 0.4
    expected = [0.5, 0.9, 0.5, 0.6, 0.4, 0.3 + 0.7 / 3]
    assert metrics.wc_acc_curve(CURVE) == pytest.approx(expected)
    assert metrics.stability_summary(CURVE) == pytest.approx({"min_acc": 0.35, "wc_acc": 0.3 + 0.7 / 3})


def test_min_acc_skips_the_evaluation_that_ends_an_experience():
    # 0.2 on E0 is at the end of experience 0 (|T_0| itself): the paper's minimum is over n > |T_0|.
    curve = metrics.EvaluationCurve(np.array([1, 2, 3]), np.array([0, 0, 1]),
                                    np.array([[0.5, 0.0], [0.2, 0.0], [0.6, 0.7]]))
    assert metrics.min_acc(curve) == pytest.approx(0.6)
    assert metrics.wc_acc(curve) == pytest.approx((0.7 + 0.6) / 2)


def test_min_acc_is_nan_when_an_earlier_experience_was_never_evaluated_after():
    curve = metrics.EvaluationCurve(np.array([1, 2]), np.array([0, 1]), np.array([[0.9, 0.1], [np.nan, 0.8]]))
    assert math.isnan(metrics.min_acc(curve)) and math.isnan(metrics.wc_acc(curve))


def test_stability_metrics_on_one_experience():
    curve = metrics.EvaluationCurve(np.array([5, 10]), np.array([0, 0]), np.array([[0.4], [0.8]]))
    assert math.isnan(metrics.min_acc(curve))
    assert metrics.wc_acc(curve) == pytest.approx(0.8)  # k = 1: WC-ACC = a(E_1, t)


@pytest.mark.parametrize("iterations, at, match", [
    ([1, 1, 2], [0, 0, 1], "training order"),
    ([1, 2, 3], [0, 1, 0], "training order"),
    ([1, 2, 3], [0, 1, 2], r"\[0, 1\]"),
    ([1, 2], [0, 1], "one entry per evaluation"),
])
def test_evaluation_curve_rejects_bad_input(iterations, at, match):
    with pytest.raises(ValueError, match=match):
        metrics.EvaluationCurve(np.array(iterations), np.array(at), np.zeros((3, 2)))
