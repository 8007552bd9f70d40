"""HY-WU against replay at equal stored bytes: replay's buffer is sized, per scenario and seed, to the bytes
HY-WU stored (`stored_memory_bytes` in each run's metrics.json: anchors, their labels and scales,
snapshots). Prints final accuracy (ACC) per strategy, mean and 95% confidence interval (Student t over the
seeds), and the paired difference HY-WU - replay with its own interval (every run pair shares its seed:
the same initial weights, warm start and data).

    python benchmarks/hywu_equal_memory.py --scenarios split-fmnist,rotated-fmnist --seeds 0,1,2,3,4
    python benchmarks/hywu_equal_memory.py --set validation=0.2 --hywu-set anchors_per_experience=100

How replay's `mem_size` is chosen: one replay run per (scenario, seed) at its default buffer gives its
bytes per stored instance (input, label and, on user streams, the condition token; measured, not
assumed); then mem_size = floor(HY-WU's bytes / bytes per instance), run as `replay-eq`. Runs are stored
under --out and reused when complete.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from hywu_bench.config import resolve_spec
from hywu_bench.registry import load_builtins
from hywu_bench.results import load_run
from hywu_bench.stats import mean_ci
from hywu_bench.sweep import ProcessExecutor, SilentListener, run_one


def t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student t interval); half-width nan for one value."""
    ci = mean_ci(values)
    return ci.mean, ci.half_width


def run_all(specs: list, out: Path, workers: int) -> list:
    if workers > 1:
        return ProcessExecutor(workers).run(specs, out, SilentListener())
    return [run_one(spec, out) for spec in specs]


def metrics_of(outcomes: list) -> dict[tuple[str, str, int], dict]:
    found = {}
    for o in outcomes:
        if not o.ok:
            print(f"FAILED {o.spec.run_name} {o.spec.scenario} seed {o.spec.seed}: {o.error}")
            continue
        found[(o.spec.run_name, o.spec.scenario, o.spec.seed)] = load_run(o.path).metrics
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="split-fmnist,rotated-fmnist,drift-fmnist,preference-fmnist")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--hywu-set", action="append", default=[], help="a HY-WU option KEY=VALUE")
    parser.add_argument("--name", default="hywu", help="run name of the HY-WU runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    load_builtins()
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = args.scenarios.split(",")
    hywu_sets = [f"strategy.{kv}" for kv in args.hywu_set]

    def spec(scenario: str, strategy: str, seed: int, name: str, sets: list[str]):
        flags = {"scenario": scenario, "strategy": strategy, "seed": seed}
        if name != strategy:  # a strategy's own name is left unset, so `compare` finds and reuses the run
            flags["name"] = name
        return resolve_spec(flags=flags, sets=[*args.sets, *sets])

    first = [spec(sc, "hywu", s, args.name, hywu_sets) for sc in scenarios for s in seeds]
    first += [spec(sc, "replay", s, "replay", []) for sc in scenarios for s in seeds]
    found = metrics_of(run_all(first, args.out, args.workers))
    matched, sizes = [], {}
    for sc in scenarios:
        for s in seeds:
            hywu, replay = found.get((args.name, sc, s)), found.get(("replay", sc, s))
            if hywu is None or replay is None:
                continue
            per_instance = replay["stored_memory_bytes"] / 200  # the default buffer, full after experience 0
            sizes[sc, s] = max(1, int(hywu["stored_memory_bytes"] // per_instance))
            matched.append(spec(sc, "replay", s, "replay-eq", [f"strategy.mem_size={sizes[sc, s]}"]))
    found.update(metrics_of(run_all(matched, args.out, args.workers)))
    print(f"final accuracy, mean +- 95% CI (Student t) over seeds {args.seeds}; stored bytes (mean)")
    for sc in scenarios:
        rows = {name: [(s, found[name, sc, s]) for s in seeds if (name, sc, s) in found]
                for name in (args.name, "replay-eq", "replay")}
        print(f"{sc}:")
        for name, runs in rows.items():
            if not runs:
                continue
            mean, half = t_interval([m["acc"] for _, m in runs])
            size = statistics.mean(m["stored_memory_bytes"] for _, m in runs)
            extra = f"  mem_size {sorted({sizes[sc, s] for s, _ in runs})}" if name == "replay-eq" else ""
            print(f"  {name:<10} {mean:.3f} +- {half:.3f}  {size / 1024:8.1f} KiB{extra}")
        pairs = {s: m["acc"] for s, m in rows[args.name]}
        diffs = [pairs[s] - m["acc"] for s, m in rows["replay-eq"] if s in pairs]
        if diffs:
            mean, half = t_interval(diffs)
            print(f"  {args.name} - replay-eq (paired): {mean:+.3f} +- {half:.3f}")


if __name__ == "__main__":
    main()
