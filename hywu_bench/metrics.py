"""Continual-learning metrics as pure functions of the accuracy matrix (numpy only, no torch).

R is T x T: R[i, j] is the accuracy on test experience j after training experience i (0-based here, so
the final row is R[T-1]). b[j] is the accuracy on experience j of the model before any training.
Definitions follow the papers exactly:

- ACC = mean_j R[T-1, j]                                      (final average accuracy)
- learning accuracy = mean_j R[j, j]                          (accuracy right after learning each one)
- BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j])             Lopez-Paz & Ranzato 2017 (GEM)
- forgetting f_j = max_{l<T-1} R[l, j] - R[T-1, j], mean over j < T-1   Chaudhry et al. 2018 (RWalk)
- FWT = 1/(T-1) sum_{j>=1} (R[j-1, j] - b[j])                  Lopez-Paz & Ranzato 2017 (GEM)
- step interference I[i, j] = R[i-1, j] - R[i, j] for j < i: how much learning i hurt j
- AIA = 1/T sum_i A_i, A_i = 1/(i+1) sum_{j<=i} R[i, j]      Rebuffi et al. 2017 (iCaRL), "average
  incremental accuracy": the mean of the accuracies on everything seen so far, after each step
- plasticity floor = min_j R[j, j]                            the worst accuracy right after learning

A_i above is the unweighted mean over experiences, which equals iCaRL's accuracy over all classes seen
so far only when the test experiences are the same size (as in split benchmarks).

The stability gap (De Lange, van de Ven & Tuytelaars, ICLR 2023, "Continual evaluation for lifelong
learning: identifying the stability gap") needs accuracy during training, not only at experience
boundaries; `EvaluationCurve` holds it and `min_acc` / `wc_acc` follow the paper's section 3:

- min-ACC_{T_k} = 1/(k-1) sum_{i<k} min_{|T_i| < n <= t} A(E_i, f_n)   (paper, 1-based tasks)
  the average over previous tasks of the minimum accuracy seen at any evaluation after the task was
  learnt (|T_i| is the last iteration of task i, t the current iteration of task k)
- WC-ACC_t = 1/k A(E_k, f_t) + (1 - 1/k) min-ACC_{T_k}                 (paper, while learning task k)
  worst-case accuracy: the current task at t, and every earlier task at its worst since it was learnt

Both are reported at the end of the curve (the last evaluation), as the paper's tables do.

Note that Avalanche's own "forgetting" is R[j, j] - R[T-1, j]; the max-based one is reported here.
A one-experience stream has ACC but no BWT, forgetting or FWT: those are NaN, never an exception.
A matrix whose earlier rows are NaN (offline joint training only has a final row) gives NaN where the
definition needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _square(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {R.shape}")
    return R


def average_accuracy(R: np.ndarray) -> float:
    R = _square(R)
    return float(np.mean(R[-1]))


def learning_accuracy(R: np.ndarray) -> float:
    return float(np.mean(np.diag(_square(R))))


def backward_transfer(R: np.ndarray) -> float:
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def forgetting_per_experience(R: np.ndarray) -> np.ndarray:
    """f_j for j < T-1 (Chaudhry et al. 2018): best accuracy ever minus final accuracy."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return np.array([])
    # max over l in [j, T-2]; rows before j are not "learnt" yet, and R[l, j] for l < j is excluded.
    return np.array([np.max(R[j:T - 1, j]) - R[-1, j] for j in range(T - 1)])


def forgetting(R: np.ndarray) -> float:
    f = forgetting_per_experience(R)
    return float(np.mean(f)) if f.size else float("nan")


def forward_transfer(R: np.ndarray, b: np.ndarray) -> float:
    R = _square(R)
    b = np.asarray(b, dtype=float)
    T = R.shape[0]
    if b.shape != (T,):
        raise ValueError(f"b must have one entry per experience ({T}), got shape {b.shape}")
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def step_interference(R: np.ndarray) -> np.ndarray:
    """I[i, j] = R[i-1, j] - R[i, j] for j < i, NaN elsewhere (positive: experience i hurt j)."""
    R = _square(R)
    T = R.shape[0]
    out = np.full((T, T), np.nan)
    for i in range(1, T):
        out[i, :i] = R[i - 1, :i] - R[i, :i]
    return out


def average_incremental_accuracy(R: np.ndarray) -> float:
    """Rebuffi et al. 2017 (iCaRL): mean over steps i of the mean accuracy on experiences j <= i."""
    R = _square(R)
    T = R.shape[0]
    # NaN rows (offline joint training has only the final row) propagate: the definition needs every step.
    return float(np.mean([np.mean(R[i, :i + 1]) for i in range(T)]))


def plasticity_floor(R: np.ndarray) -> float:
    """min_j R[j, j]: the worst accuracy on an experience right after learning it (NaN if any is missing)."""
    return float(np.min(np.diag(_square(R))))


def summary(R: np.ndarray, b: np.ndarray | None = None) -> dict[str, float]:
    out = {
        "acc": average_accuracy(R),
        "learning_acc": learning_accuracy(R),
        "bwt": backward_transfer(R),
        "forgetting": forgetting(R),
        "fwt": forward_transfer(R, b) if b is not None else float("nan"),
        "aia": average_incremental_accuracy(R),
        "plasticity_floor": plasticity_floor(R),
    }
    return out


# ---------------------------------------------------------------------------------------------------
# Continual evaluation: the stability gap (De Lange et al., ICLR 2023)


@dataclass(frozen=True)
class EvaluationCurve:
    """Accuracy on every test experience at evaluations taken during training, in training order.

    iterations     (N,)   training iteration after which evaluation n was taken; strictly increasing
    experience_at  (N,)   0-based index of the experience being trained at evaluation n; non-decreasing.
                          An evaluation at the end of experience k (the one that gives R[k]) has
                          experience_at = k: it is not yet "after" k was learnt, so min-ACC skips it for k.
    acc            (N, T) accuracy on test experience j at evaluation n; NaN where j was not evaluated

    Only evaluations with experience_at > j count towards experience j's minimum; an evaluation before
    any training (iteration 0, experience_at 0) therefore counts for nothing.
    """

    iterations: np.ndarray
    experience_at: np.ndarray
    acc: np.ndarray

    def __post_init__(self) -> None:
        acc = np.asarray(self.acc, dtype=float)
        iterations = np.asarray(self.iterations)
        at = np.asarray(self.experience_at)
        if acc.ndim != 2 or acc.shape[0] == 0 or acc.shape[1] == 0:
            raise ValueError(f"acc must be N x T with N, T >= 1, got shape {acc.shape}")
        N, T = acc.shape
        if iterations.shape != (N,) or at.shape != (N,):
            raise ValueError(f"iterations and experience_at must have one entry per evaluation ({N}), got "
                             f"shapes {iterations.shape} and {at.shape}")
        if not np.issubdtype(at.dtype, np.integer):
            raise ValueError(f"experience_at must hold integer experience indices, got dtype {at.dtype}")
        if at.min() < 0 or at.max() >= T:
            raise ValueError(f"experience_at must lie in [0, {T - 1}] (T = {T} test experiences), got "
                             f"values from {at.min()} to {at.max()}")
        if np.any(np.diff(iterations) <= 0) or np.any(np.diff(at) < 0):
            raise ValueError("evaluations must be in training order: iterations strictly increasing and "
                             "experience_at non-decreasing")
        object.__setattr__(self, "acc", acc)
        object.__setattr__(self, "iterations", iterations)
        object.__setattr__(self, "experience_at", at.astype(int))


def _running_minima(curve: EvaluationCurve) -> np.ndarray:
    """M[n, j] = min over evaluations m <= n with experience_at[m] > j of acc[m, j]; NaN if there is none."""
    N, T = curve.acc.shape
    out = np.full((N, T), np.nan)
    running = np.full(T, np.nan)  # (T,)
    for n, k in enumerate(curve.experience_at):
        # np.fmin ignores NaN: an experience not evaluated at n keeps its earlier minimum.
        running[:k] = np.fmin(running[:k], curve.acc[n, :k])
        out[n] = running
    return out


def min_acc_curve(curve: EvaluationCurve) -> np.ndarray:
    """min-ACC at each evaluation n, learning k = experience_at[n]; NaN while k = 0 (no earlier task)."""
    minima = _running_minima(curve)  # (N, T)
    out = np.full(len(curve.experience_at), np.nan)
    for n, k in enumerate(curve.experience_at):
        if k > 0:
            out[n] = np.mean(minima[n, :k])  # NaN if an earlier experience has no evaluation since learnt
    return out


def wc_acc_curve(curve: EvaluationCurve) -> np.ndarray:
    """WC-ACC at every evaluation: 1/k a(E_k, t) + (1 - 1/k) min-ACC, k counted from 1 as in the paper."""
    min_accs = min_acc_curve(curve)  # (N,)
    out = np.empty(len(min_accs))
    for n, k in enumerate(curve.experience_at):
        current = curve.acc[n, k]
        # k + 1 is the paper's 1-based k; on the first task the min-ACC term has weight 0 (and is undefined).
        out[n] = current if k == 0 else current / (k + 1) + (1 - 1 / (k + 1)) * min_accs[n]
    return out


def min_acc_per_experience(curve: EvaluationCurve) -> np.ndarray:
    """(T,) the minimum accuracy on each experience over the whole curve after it was learnt (NaN if none)."""
    return _running_minima(curve)[-1]


def min_acc(curve: EvaluationCurve) -> float:
    """min-ACC at the end of the curve (NaN for a one-experience stream)."""
    return float(min_acc_curve(curve)[-1])


def wc_acc(curve: EvaluationCurve) -> float:
    """WC-ACC at the end of the curve (for a one-experience stream: the final accuracy on it)."""
    return float(wc_acc_curve(curve)[-1])


def stability_summary(curve: EvaluationCurve) -> dict[str, float]:
    return {"min_acc": min_acc(curve), "wc_acc": wc_acc(curve)}
