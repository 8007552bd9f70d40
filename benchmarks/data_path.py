"""Trust the fast data path: the same runs through Avalanche's own loaders and through the tensor path.

Naive, replay and EWC on Split Fashion-MNIST (5 experiences x 2 classes, the scenario's recommended
settings), seeds 0-2, once with `data_path=tensor` (the harness's `TensorLoader`, the default) and once
with `data_path=avalanche` (Avalanche's per-sample DataLoader; every warm start, training and evaluation
loader of the run). Results cannot be bit-identical: the two shuffle the minibatches differently. They
must agree within the seed spread: per strategy the difference of the two mean final accuracies (ACC)
is divided by the larger of the two seed standard deviations (ddof=1), and the last line prints the
largest such ratio, `max_abs_diff_over_spread X` (X <= 1: within the spread).

    python benchmarks/data_path.py [--strategies naive,replay,ewc] [--seeds 0,1,2] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hywu_bench.config import resolve_spec
from hywu_bench.runner import run

PATHS = ("tensor", "avalanche")


def final_accuracies(strategy: str, seeds: list[int], data_path: str, out: Path, epochs: int | None,
                     scenario: str = "split-fmnist") -> tuple[np.ndarray, float]:
    """(ACC per seed, wall seconds in all) of `strategy` through one data path."""
    accs, t0 = [], time.perf_counter()
    for seed in seeds:
        flags = dict(scenario=scenario, strategy=strategy, seed=seed, device="cpu", epochs=epochs)
        record = run(resolve_spec(flags=flags, sets=[f"data_path={data_path}"]), out / data_path)
        accs.append(record.metrics["acc"])
    return np.array(accs), time.perf_counter() - t0


def compare_paths(strategies: list[str], seeds: list[int], out: Path, epochs: int | None = None,
                  scenario: str = "split-fmnist") -> dict[str, dict[str, float]]:
    """Per strategy: mean and std (ddof=1) of ACC through each path, their difference, the ratio to the
    larger std, and the wall time of each path (not a speed comparison: the first strategy of each path
    also trains the warm starts; benchmarks/overhead.py measures speed)."""
    table = {}
    for strategy in strategies:
        row: dict[str, float] = {}
        for path in PATHS:
            accs, seconds = final_accuracies(strategy, seeds, path, out, epochs, scenario)
            row.update({f"{path}_mean": float(accs.mean()), f"{path}_std": float(accs.std(ddof=1)),
                        f"{path}_seconds": seconds})
        row["diff"] = row["avalanche_mean"] - row["tensor_mean"]
        spread = max(row["tensor_std"], row["avalanche_std"])
        row["diff_over_spread"] = abs(row["diff"]) / spread if spread > 0 else (0.0 if row["diff"] == 0 else np.inf)
        table[strategy] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="naive,replay,ewc")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: the scenario's recommendation")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        table = compare_paths(args.strategies.split(","), seeds, Path(args.out or tmp), args.epochs)
    print(f"split-fmnist, final average accuracy over seeds {args.seeds} (mean +- std)")
    for strategy, r in table.items():
        print(f"{strategy:8s} tensor {r['tensor_mean']:.4f} +- {r['tensor_std']:.4f}  "
              f"avalanche {r['avalanche_mean']:.4f} +- {r['avalanche_std']:.4f}  diff {r['diff']:+.4f}  "
              f"|diff|/spread {r['diff_over_spread']:.2f}")
    print(f"max_abs_diff_over_spread {max(r['diff_over_spread'] for r in table.values()):.2f}")


if __name__ == "__main__":
    main()
