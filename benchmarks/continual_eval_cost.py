"""The cost of continual evaluation: the same run with `eval_every=N` and without, wall time ratio.

Naive on Split Fashion-MNIST (5 experiences x 2 classes, the scenario's recommended settings: MLP, 2
epochs, batch 64, so about 188 iterations per epoch), seed 0, shared warm start. With `eval_every=10`
every 10th training iteration also evaluates on the test experiences seen so far (2,000 images each).
Runs alternate (off, on, off, on, ...) so that other load on the machine hits both alike; the best time
of each is kept. The warm start is trained once before timing. Prints `ratio X` last (on / off).

    python benchmarks/continual_eval_cost.py [--every 10] [--repeats 2] [--strategy naive] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hywu_bench.config import resolve_spec
from hywu_bench.runner import run


def timed(strategy: str, every: int, out: Path, name: str) -> tuple[float, dict]:
    sets = [f"eval_every={every}"] if every else []
    spec = resolve_spec(flags=dict(scenario="split-fmnist", strategy=strategy, device="cpu", name=name), sets=sets)
    t0 = time.perf_counter()
    record = run(spec, out, overwrite=True)
    return time.perf_counter() - t0, record.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--strategy", default="naive")
    parser.add_argument("--out", default=None, help="keep the last runs here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        timed(args.strategy, 0, out, f"{args.strategy}-warmup")  # trains and caches the shared warm start
        off, on, metrics = [], [], {}
        for _ in range(args.repeats):
            off.append(timed(args.strategy, 0, out, args.strategy)[0])
            seconds, metrics = timed(args.strategy, args.every, out, f"{args.strategy}-every{args.every}")
            on.append(seconds)
    print(f"{args.strategy} on split-fmnist: off {min(off):.1f}s, eval_every={args.every} {min(on):.1f}s "
          f"(best of {args.repeats}); {metrics['curve_evaluations']} evaluations took "
          f"{metrics['curve_eval_seconds']:.1f}s; min-ACC {metrics['min_acc']:.3f}, WC-ACC {metrics['wc_acc']:.3f}")
    print(json.dumps({"off": off, "on": on}))
    print(f"ratio {min(on) / min(off):.2f}")


if __name__ == "__main__":
    main()
