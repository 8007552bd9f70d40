"""HY-WU's plasticity floor against naive fine-tuning's, from stored runs (no training, no torch).

The plasticity floor of a run is min over j of R[j, j]: how well its worst-learnt experience was learnt
right after learning it (the runner's accuracy_matrix.csv). Naive fine-tuning learns every experience
with the whole network, so its floor is the reference; the target is HY-WU's floor >= half of naive's on
every seed. Run the compare first:

    hywu-bench compare --scenario split-digits --strategies hywu,naive --seeds 0-4
    python benchmarks/hywu_plasticity.py results/split-digits [--strategy hywu --reference naive]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hywu_bench.metrics import plasticity_floor
from hywu_bench.results import is_complete, matrix_from_csv


def floors(folder: Path) -> dict[int, tuple[float, int]]:
    """seed -> (min_j R[j, j], the j that attains it) for every complete run below `folder`."""
    out = {}
    for run in sorted(folder.glob("seed*")):
        if not is_complete(run):
            continue
        _, R = matrix_from_csv(run / "accuracy_matrix.csv")
        worst = int(R.diagonal().argmin())
        out[int(run.name[4:])] = (plasticity_floor(R), worst)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario_folder", type=Path, help="e.g. results/split-fmnist")
    parser.add_argument("--strategy", default="hywu")
    parser.add_argument("--reference", default="naive")
    args = parser.parse_args()
    mine, ref = floors(args.scenario_folder / args.strategy), floors(args.scenario_folder / args.reference)
    seeds = sorted(set(mine) & set(ref))
    if not seeds:
        raise SystemExit(f"no seed with complete runs of both {args.strategy} and {args.reference} "
                         f"under {args.scenario_folder}")
    print(f"{'seed':>4}  {args.strategy + ' floor (exp)':>18}  {args.reference + ' floor (exp)':>18}  ratio")
    ratios = []
    for s in seeds:
        (a, ja), (b, jb) = mine[s], ref[s]
        ratios.append(a / b if b > 0 else float("inf"))
        print(f"{s:>4}  {a:>12.3f} ({ja})  {b:>12.3f} ({jb})  {ratios[-1]:.2f}")
    print(f"lowest ratio {min(ratios):.2f} (target >= 0.5): {'met' if min(ratios) >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
