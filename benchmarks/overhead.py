"""Harness overhead against a plain PyTorch loop doing the same work, measured in one process.

Naive on Split Fashion-MNIST (5 experiences x 2 classes), MLP 784-256-256-10, SGD lr 0.01, batch 128,
1 epoch per experience, evaluation on the whole test stream after every experience, warm start off.
The harness run includes everything `hywu-bench run` does (Avalanche templates and plugins, result
files); the plain loop trains and evaluates the same model on the same tensors. Data loading is done
once before either is timed. Prints the harness/plain time ratio as its last line: `ratio X.XX`.

    python benchmarks/overhead.py [--repeats 3] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.nn import functional as F

from hywu_bench.config import resolve_spec
from hywu_bench.data import dataset_tensors
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS
from hywu_bench.runner import run, seed_everything


def plain_loop(spec, scenario) -> float:
    info = scenario.info
    train = [dataset_tensors(e.dataset) for e in scenario.train_stream]
    test = [dataset_tensors(e.dataset) for e in scenario.test_stream]
    seed_everything(spec.seed)
    model = build_backbone("mlp", info.input_shape, info.n_classes, spec.seed)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr)
    t0 = time.perf_counter()
    for x, y, *_ in train:
        model.train()
        order = torch.randperm(len(y))
        for s in range(0, len(y), spec.batch_size):
            idx = order[s:s + spec.batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for tx, ty, *_ in test:
                _ = sum(int((model(tx[s:s + 1024]).argmax(1) == ty[s:s + 1024]).sum())
                              for s in range(0, len(ty), 1024))
    return time.perf_counter() - t0


def harness(spec) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run(spec, out)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    flags = dict(scenario="split-fmnist", strategy="naive", epochs=1, lr=0.01, batch_size=128, backbone="mlp",
                 warm_start=False, data_root=args.data_root)
    spec = resolve_spec(flags=flags, sets=["scenario.n_experiences=5"])
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)  # loads and caches the data
    harness(spec)  # warm-up: first-call costs (imports, allocator) on neither side's clock
    plain_loop(spec, scenario)
    pairs = [(harness(spec), plain_loop(spec, scenario)) for _ in range(args.repeats)]  # interleaved
    h, p = min(t for t, _ in pairs), min(t for _, t in pairs)
    print(f"harness {h:.2f}s  plain loop {p:.2f}s  (best of {args.repeats}, {torch.get_num_threads()} threads)")
    print(f"ratio {h / p:.2f}")


if __name__ == "__main__":
    main()
