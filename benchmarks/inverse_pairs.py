"""Gradient conflict between opposed users on `inverse-<dataset>` runs: pairs against non-pairs.

On `inverse-<dataset>` users 2p and 2p+1 label the same images y -> pi_p(y) and y -> n-1-pi_p(y). For
every stored run below FOLDER (`<scenario>/<strategy>/seed<k>`), this reads `interference.json` and prints,
per strategy and probe, the cosine averaged over the opposed pairs (2p, 2p+1) and over all other pairs of
users, mean +- std over seeds. Torch-free: it reads stored results only.

    python benchmarks/inverse_pairs.py results/probe/inverse-fmnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hywu_bench import interference, results

KINDS = ("gradient_conflict_shared_lora", "gradient_conflict_logits", "gradient_conflict_own_parameters",
         "gradient_conflict_own_factors", "operator_separation")


def pair_means(matrix: np.ndarray) -> tuple[float, float]:
    """(mean cosine over the opposed pairs (2p, 2p+1), mean over every other pair i < j)."""
    T = matrix.shape[0]
    pairs = [matrix[i, i + 1] for i in range(0, T - 1, 2)]
    others = [matrix[i, j] for i in range(T) for j in range(i + 1, T) if not (i % 2 == 0 and j == i + 1)]
    return float(np.mean(pairs)), float(np.mean(others)) if others else float("nan")


def summarise(folder: Path) -> dict[tuple[str, str], np.ndarray]:
    """(strategy, probe) -> (seeds, 2) array of (pair mean, other mean)."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run in results.find_runs(folder.parent)[0]:
        if run.parent.parent != folder or not (run / interference.FILE_NAME).exists():
            continue
        probe = interference.load(run / interference.FILE_NAME)
        for kind in KINDS:
            if probe.get(kind) is not None:
                out.setdefault((run.parent.name, kind), []).append(pair_means(np.array(probe[kind], dtype=float)))
    return {key: np.array(values) for key, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="<out>/<scenario>, e.g. results/probe/inverse-fmnist")
    args = parser.parse_args()
    table = summarise(args.folder)
    print(f"{'strategy':10s} {'probe':34s} {'opposed pairs':>16s} {'other pairs':>16s}  seeds")
    for (strategy, kind), values in sorted(table.items()):
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(2)
        print(f"{strategy:10s} {kind:34s} {mean[0]:+8.3f} +- {std[0]:.3f} {mean[1]:+8.3f} +- {std[1]:.3f}  "
              f"{len(values)}")


if __name__ == "__main__":
    main()
