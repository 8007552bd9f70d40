"""Choose HY-WU's options on held-out training data: candidate option sets x scenarios x seeds, every run
evaluated on a held-out fraction of each experience's training data (`validation=F`), never on the test
split. Prints final accuracy (ACC) and forgetting, mean +- sample std over the seeds, per candidate and
scenario, with reference strategies (e.g. joint, replay) run on the same validation splits.

    python benchmarks/hywu_validation.py \\
        --candidate default: \\
        --candidate router16:hidden=0,bank_size=16 \\
        --scenarios split-fmnist,permuted-fmnist,preference-fmnist --seeds 0,1,2 --reference joint,replay

A candidate is NAME:KEY=VALUE,KEY=VALUE (HY-WU options, as with --set; `sites=fc1+fc2` for tuples, `fc1+` for one);
runs are stored under --out (results/validation by default) as `<scenario>-validation/hywu-NAME/seedS`,
so re-running reuses finished runs and only adds what is new.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hywu_bench.config import parse_value, resolve_spec
from hywu_bench.registry import load_builtins
from hywu_bench.results import load_run
from hywu_bench.sweep import ProcessExecutor, SilentListener, run_one


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, _, options = text.partition(":")
    sets = []
    for pair in filter(None, options.split(",")):
        key, _, value = pair.partition("=")
        if "+" in value:  # a tuple of layer names: fc1+fc2, or fc1+ for one
            value = "[" + ",".join(f'"{v}"' for v in value.split("+") if v) + "]"
        parse_value(value)
        sets.append(f"strategy.{key}={value}")
    return name, sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    parser.add_argument("--scenarios", default="split-fmnist,permuted-fmnist,preference-fmnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--reference", default="", help="comma-separated strategies run on the same splits")
    parser.add_argument("--fraction", type=float, default=0.2, help="held-out fraction of each experience")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/validation"))
    args = parser.parse_args()
    load_builtins()
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = args.scenarios.split(",")
    candidates = [parse_candidate(c) for c in args.candidate] or [("default", [])]
    rows = [(f"hywu-{name}", "hywu", sets) for name, sets in candidates]
    rows += [(ref, ref, []) for ref in filter(None, args.reference.split(","))]
    specs = [resolve_spec(flags={"scenario": scenario, "strategy": strategy, "seed": seed, "name": name},
                          sets=[f"validation={args.fraction}", *args.sets, *sets])
             for scenario in scenarios for name, strategy, sets in rows for seed in seeds]
    t0 = time.perf_counter()
    if args.workers > 1:
        outcomes = ProcessExecutor(args.workers).run(specs, args.out, SilentListener())
    else:
        outcomes = [run_one(spec, args.out) for spec in specs]
    by_key: dict[tuple[str, str], list[dict]] = {}
    for outcome in outcomes:
        if not outcome.ok:
            print(f"FAILED {outcome.spec.run_name} {outcome.spec.scenario} seed {outcome.spec.seed}: {outcome.error}")
            continue
        metrics = load_run(outcome.path).metrics
        by_key.setdefault((outcome.spec.run_name, outcome.spec.scenario), []).append(metrics)
    print(f"validation fraction {args.fraction}, seeds {args.seeds}, {len(specs)} runs in "
          f"{time.perf_counter() - t0:.0f} s; ACC / forgetting, mean +- std")
    width = max(len(r[0]) for r in rows)
    print(" " * width + "".join(f"  {s:>28}" for s in scenarios))
    for name, _, _ in rows:
        cells = []
        for scenario in scenarios:
            ms = by_key.get((name, scenario), [])
            acc = [m["acc"] for m in ms]
            fgt = [m["forgetting"] for m in ms
                   if isinstance(m.get("forgetting"), float) and m["forgetting"] == m["forgetting"]]
            if not acc:
                cells.append(f"{'-':>28}")
                continue
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            f = f"{statistics.mean(fgt):.3f}" if fgt else "  -  "
            cells.append(f"{statistics.mean(acc):>13.3f} +- {sd:.3f} / {f}")
        print(f"{name:<{width}}" + "".join(f"  {c:>28}" for c in cells))


if __name__ == "__main__":
    main()
