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

Note that Avalanche's own "forgetting" is R[j, j] - R[T-1, j]; the max-based one is reported here.
A one-experience stream has ACC but no BWT, forgetting or FWT: those are NaN, never an exception.
A matrix whose earlier rows are NaN (offline joint training only has a final row) gives NaN where the
definition needs them.
"""

from __future__ import annotations

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


def summary(R: np.ndarray, b: np.ndarray | None = None) -> dict[str, float]:
    out = {
        "acc": average_accuracy(R),
        "learning_acc": learning_accuracy(R),
        "bwt": backward_transfer(R),
        "forgetting": forgetting(R),
        "fwt": forward_transfer(R, b) if b is not None else float("nan"),
    }
    return out
