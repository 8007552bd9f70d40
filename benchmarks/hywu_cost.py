"""What HY-WU costs against the plain backbone, measured in one process on random data.

On the MLP (784-256-256-10, 28x28 inputs) and the small CNN, with the strategy's default options (or the
ones given with --set), training steps on a batch of 128, inference on the harness's evaluation batch
(`RunSpec.eval_batch_size`, 1,024: what `hywu-bench run` evaluates with; `--eval-batch`) and on 128:

- train_ratio: one HY-WU training step (forward with generated per-instance updates, cross-entropy plus
  the functional memory on `anchors_per_step` of 1,000 stored anchors: rehearsal through the model, or
  the regulariser where the model cannot rehearse; backward, Adam step) over one naive step (forward,
  backward, SGD step on the whole backbone);
- infer_ratio: HY-WU inference (condition, generator, adapted forward) over the base model's forward, at
  the evaluation batch (`infer_ratio_at_batch_128` before it);
- operator_speedup: the batched per-instance low-rank Linear (fc1 of the MLP, rank 4) over a Python loop
  that sends each instance through a Linear with its own merged weight W + scaling B_i A_i (the reference
  the tests compare against); the line before it gives the speedup over a loop through the same factored
  operator one instance at a time (batching alone, no merging); `operator_speedup_ceiling` is the merged
  loop over the plain base Linear on the same batch, the most any batched operator could reach (its
  low-rank part would have to cost nothing). `operator_speedup_at_default_sites` makes
  the same comparison on the sites and factors HY-WU generates at its defaults (fc2 and the head, the
  bank's shared bases with per-instance gates), summed over the sites.

Timings are the fastest of interleaved repeats (as `timeit` advises: slower repeats measure other load,
not the code; interleaving lets both sides of a ratio see the same machine), on
one intra-op thread by default: at these sizes thread hand-offs dominate on a shared machine and make
ratios unrepeatable (`--threads 0` keeps torch's default). They are this process's CPU time
(`time.process_time`), not wall time: on a shared machine the wall time of a call also counts the time
other processes held the core, which has nothing to do with what the call costs (`--clock wall` for
wall time).
`infer_ratio_of_bare_operations` times the same inference on the MLP written as bare torch calls (no
modules, hooks or checks): the part of `infer_ratio` that is arithmetic, the rest being per-call cost.
The last three lines are the MLP's figures: `train_ratio X`, `infer_ratio Y`, `operator_speedup Z`.

    python benchmarks/hywu_cost.py [--repeats 30] [--threads 1] [--set generator=mlp ...]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.nn import functional as F

from hywu_bench.config import RunSpec, parse_set
from hywu_bench.models import build_backbone
from hywu_bench.registry import STRATEGIES, load_builtins
from hywu_bench.training import quiet_evaluator
from strategies.hywu.strategy import HYWUStrategy
from strategies.lowrank import LowRankLinear, use_factors

BATCH = 128
CLOCK = time.process_time  # --clock wall: time.perf_counter
N_ANCHORS = 1000  # 5 experiences x 200 anchors


def timed(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Seconds per call of each function, the fastest of `repeats` interleaved calls."""
    for fn in fns.values():  # warm-up
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = CLOCK()
            fn()
            times[name].append(CLOCK() - t0)
    return {k: min(v) for k, v in times.items()}


def build_strategy(backbone: str, overrides: dict) -> tuple[torch.nn.Module, HYWUStrategy]:
    shape = (1, 28, 28)
    base = build_backbone(backbone, shape, 10, seed=0)
    naive = build_backbone(backbone, shape, 10, seed=0)
    options = STRATEGIES.options("hywu", overrides)
    strategy = HYWUStrategy(model=base, options=options, input_shape=shape, train_mb_size=BATCH,
                            train_epochs=1, device="cpu", evaluator=quiet_evaluator(), warm_started=True)
    x = torch.rand(N_ANCHORS, *shape)
    t = torch.zeros(N_ANCHORS, dtype=torch.long)
    strategy.memory.add(strategy.model.condition_raw(x, None, t), labels=torch.randint(0, 10, (N_ANCHORS,)))
    strategy.snapshot()
    return naive, strategy


def step_costs(backbone: str, overrides: dict, repeats: int, eval_batch: int) -> tuple[float, float, float]:
    """(train ratio at BATCH, infer ratio at BATCH, infer ratio at `eval_batch`)."""
    naive, strategy = build_strategy(backbone, overrides)
    x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    t = torch.zeros(BATCH, dtype=torch.long)
    x_eval = torch.rand(eval_batch, 1, 28, 28)
    sgd = torch.optim.SGD(naive.parameters(), lr=0.01)
    hywu = strategy.model

    def naive_step() -> None:
        sgd.zero_grad()
        F.cross_entropy(naive(x), y).backward()
        sgd.step()

    def hywu_step() -> None:
        strategy.mbatch = [x, y, t]
        strategy.is_training = True
        strategy.optimizer.zero_grad()
        strategy.mb_output = strategy.forward()
        strategy.criterion().backward()
        strategy.optimizer.step()

    @torch.no_grad()
    def infer_ratio(inputs: torch.Tensor, n: int) -> float:
        times = timed({"naive": lambda: naive(inputs), "hywu": lambda: hywu(inputs)}, n)
        return times["hywu"] / times["naive"]

    naive.train(), hywu.train()
    train = timed({"naive": naive_step, "hywu": hywu_step}, repeats)
    naive.eval(), hywu.eval()
    return train["hywu"] / train["naive"], infer_ratio(x, repeats), infer_ratio(x_eval, max(5, repeats // 3))


def mlp_floor(repeats: int, overrides: dict) -> float | None:
    """HY-WU's inference on the MLP as bare torch calls, over the base's: what its operations cost with
    no module calls, hooks or checks around them (bank generator, condition read at fc1, sites among
    fc1, fc2 and head). The rest of `infer_ratio` is per-call overhead. None for other configurations."""
    naive, strategy = build_strategy("mlp", overrides)
    model = strategy.model
    gen, opts = model.generator, strategy.options
    if (opts.generator != "bank" or model.condition.spec != "features" or model.condition.reader.layer != "fc1"
            or not set(model.sites) <= {"fc1", "fc2", "head"}):
        return None
    x = torch.rand(BATCH, 1, 28, 28)
    A, B = gen.lora_A._parameters, gen.lora_B._parameters
    k, r = gen.bank_size, gen.rank
    index = {name: i for i, name in enumerate(model.sites)}
    scaling = next(iter(model.sites.values())).scaling

    def adapted(name: str, h: torch.Tensor, y: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """y plus site `name`'s gated low-rank update of its input h (y itself when not a site)."""
        if name not in index:
            return y
        u = F.linear(h, A[name]).view(BATCH, k, r).mul_(mix[:, index[name], :, None]).view(BATCH, k * r)
        return y.addmm(u, B[name].t(), alpha=scaling)

    def layer(name: str, h: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        base = getattr(naive, name)
        return adapted(name, h, F.linear(h, base.weight, base.bias), mix)

    @torch.no_grad()
    def floor() -> torch.Tensor:
        h = x.flatten(1)
        y1 = F.linear(h, naive.fc1.weight, naive.fc1.bias)  # also the condition: fc1's base output
        mix = gen.mixing(F.layer_norm(y1, y1.shape[-1:], eps=1e-5))
        y1 = adapted("fc1", h, y1, mix)
        return layer("head", F.relu(layer("fc2", F.relu(y1), mix)), mix)

    @torch.no_grad()
    def base() -> None:
        naive(x)

    with torch.no_grad():  # the bare calls compute exactly what the model does (trained bank, nonzero B)
        for p in gen.lora_B.parameters():
            p.normal_(0, 0.05)
        model.eval()
        if not torch.allclose(floor(), model(x), atol=1e-4):
            raise AssertionError("the bare-operation version of HY-WU's inference differs from the model")
    times = timed({"base": base, "floor": floor}, repeats)
    return times["floor"] / times["base"]


def operator_speedups(repeats: int) -> tuple[float, float, float]:
    """The batched operator against (a) each instance through a Linear with its own merged weight
    W + scaling B_i A_i (what per-instance weights cost without the factored, batched form), and (b) each
    instance through the same factored operator, one at a time (the batching alone); and (c) the ceiling
    of (a): the merged loop against the plain base Linear on the same batch, what a batched operator whose
    low-rank part cost nothing would reach."""
    site = LowRankLinear(torch.nn.Linear(784, 256), rank=4, alpha=8.0)
    x = torch.rand(BATCH, 784)
    A, B = 0.01 * torch.randn(BATCH, 4, 784), 0.01 * torch.randn(BATCH, 256, 4)
    sites = {"fc1": site}
    W, b = site.base_layer.weight, site.base_layer.bias

    @torch.no_grad()
    def batched() -> None:
        with use_factors(sites, {"fc1": (A, B)}):
            site(x)

    @torch.no_grad()
    def plain() -> None:
        F.linear(x, W, b)

    @torch.no_grad()
    def merged_loop() -> None:
        for i in range(BATCH):
            F.linear(x[i:i + 1], W + site.delta_weight(A[i], B[i]), b)

    @torch.no_grad()
    def factored_loop() -> None:
        for i in range(BATCH):
            with use_factors(sites, {"fc1": (A[i:i + 1], B[i:i + 1])}):
                site(x[i:i + 1])

    times = timed({"batched": batched, "plain": plain, "merged": merged_loop, "factored": factored_loop},
                  max(5, repeats // 3))
    return (times["merged"] / times["batched"], times["factored"] / times["batched"],
            times["merged"] / times["plain"])


def default_sites_speedup(overrides: dict, repeats: int) -> float:
    """The same comparison on the sites and factors HY-WU generates at its defaults (the MLP's fc2 and head,
    the bank's shared bases with per-instance gates): the batched sites against each instance through
    Linears with its own merged weights W + scaling B diag(gate_i) A, summed over the sites."""
    _, strategy = build_strategy("mlp", overrides)
    model = strategy.model.eval()
    with torch.no_grad():
        factors = model.generate(model.condition_raw(torch.rand(BATCH, 1, 28, 28), None, None))
    sites = {name: model.sites[name] for name in factors}
    inputs = {name: torch.rand(BATCH, site.in_features) for name, site in sites.items()}

    def merged_weight(name: str, i: int) -> torch.Tensor:
        site, (A, B, *gate) = sites[name], factors[name]
        A, B = (A[i] if A.dim() == 3 else A), (B[i] if B.dim() == 3 else B)  # (R, D_in), (D_out, R)
        if gate and gate[0] is not None:  # (B, G): gate j scales rank entries j*R/G .. (j+1)*R/G
            B = B * gate[0][i].repeat_interleave(A.shape[0] // gate[0].shape[-1])
        return site.base_layer.weight + site.scaling * (B @ A)

    @torch.no_grad()
    def batched() -> None:
        with use_factors(sites, factors):
            for name, site in sites.items():
                site(inputs[name])

    @torch.no_grad()
    def merged_loop() -> None:
        for name, site in sites.items():
            for i in range(BATCH):
                F.linear(inputs[name][i:i + 1], merged_weight(name, i), site.base_layer.bias)

    with torch.no_grad(), use_factors(sites, factors):  # the loop computes what the batched sites compute
        for name, site in sites.items():
            rows = torch.cat([F.linear(inputs[name][i:i + 1], merged_weight(name, i), site.base_layer.bias)
                              for i in range(BATCH)])
            if not torch.allclose(rows, site(inputs[name]), atol=1e-4):
                raise AssertionError(f"the merged loop differs from the batched site {name}")
    times = timed({"batched": batched, "merged": merged_loop}, max(5, repeats // 3))
    return times["merged"] / times["batched"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="hywu option KEY=VALUE")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="time.process_time or perf_counter")
    parser.add_argument("--eval-batch", type=int, default=RunSpec.eval_batch_size, help="inference batch")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    load_builtins()
    overrides = dict(parse_set(args.sets))
    torch.manual_seed(0)
    print(f"hywu options: {vars(STRATEGIES.options('hywu', overrides))}")
    cnn_train, cnn_infer_128, cnn_infer = step_costs("cnn", overrides, args.repeats, args.eval_batch)
    print(f"cnn train_ratio {cnn_train:.2f}")
    print(f"cnn infer_ratio_at_batch_128 {cnn_infer_128:.2f}")
    print(f"cnn infer_ratio {cnn_infer:.2f}")
    floor = mlp_floor(args.repeats, overrides)
    if floor is not None:
        print(f"infer_ratio_of_bare_operations {floor:.2f}")
    mlp_train, mlp_infer_128, mlp_infer = step_costs("mlp", overrides, args.repeats, args.eval_batch)
    merged, factored, ceiling = operator_speedups(args.repeats)
    print(f"operator_speedup_at_default_sites {default_sites_speedup(overrides, args.repeats):.1f}")
    print(f"operator_speedup_vs_factored_loop {factored:.1f}")
    print(f"operator_speedup_ceiling {ceiling:.1f}  (the merged loop over the plain Linear)")
    print(f"infer_ratio_at_batch_128 {mlp_infer_128:.2f}")
    print(f"train_ratio {mlp_train:.2f}")
    print(f"infer_ratio {mlp_infer:.2f}  (batch {args.eval_batch})")
    print(f"operator_speedup {merged:.1f}")


if __name__ == "__main__":
    main()
