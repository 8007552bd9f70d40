"""Why opposed users' gradients need not conflict at a trained model: the cosine split by instance kind.

On `inverse-fmnist` with one pair (user 0: y, user 1: 9 - y, the same images), naive fine-tuning ends
fitted to user 1. This trains it through the harness (warm start on user 0, then user 1), takes the
interference probes' sample of 128 test images, and splits it by what the final model predicts for user 1's
input: right (the label 9 - y), the opposed label y, or a third class. For each part it prints the share
of images, the per-instance logit gradients' mean cosine between the two users, and the cosine of the two
users' gradients on the shared LoRA adapter (the `gradient_conflict_shared_lora` probe) on that part alone.

    python benchmarks/inverse_decomposition.py [--seed 0]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from hywu_bench import interference
from hywu_bench.config import resolve_spec
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins
from hywu_bench.runner import seed_everything, warm_start
from hywu_bench.settings import resolve_hyperparameters
from hywu_bench.training import TrainingSetup


class Quiet:
    def epoch(self, *args: object) -> None:
        pass


def shared_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    site = interference.shared_site(model)
    with interference._SharedAdapter(site, A) as adapter:
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), adapter.leaves)
    return grad.flatten()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_builtins()
    spec = resolve_spec(flags=dict(scenario="inverse-fmnist", strategy="naive", seed=args.seed, device="cpu"),
                        sets=["scenario.n_pairs=1"])
    seed_everything(spec.seed)
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    resolved = resolve_hyperparameters(spec, scenario.info)
    model = build_backbone(resolved.backbone, scenario.info.input_shape, scenario.info.n_classes, spec.seed)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        warm_start(model, scenario, resolved, torch.device("cpu"), Path(tmp), Quiet())
    setup = TrainingSetup(resolved, scenario.info, torch.device("cpu"), resolved.epochs, resolved.batch_size,
                          resolved.lr, [])
    seed_everything(spec.seed)
    strategy = STRATEGIES.build("naive", model, setup)
    strategy.train(scenario.train_stream[1])  # experience 0 is the warm start
    model.eval()
    (x0, y0, *_), (x1, y1, *_) = interference.sample_batches(scenario.test_stream, interference.N_SAMPLES, 0)
    assert torch.equal(y1, 9 - y0)  # the same images, opposed labels
    site = interference.shared_site(model)
    A = interference.shared_adapter_A(site[1].in_features, interference.SHARED_RANK, 0).float()
    with torch.no_grad():
        predicted = model(x1).argmax(1)
    parts = {"all": torch.ones_like(y1, dtype=torch.bool), "right (9-y)": predicted == y1,
             "opposed (y)": predicted == y0, "third class": (predicted != y1) & (predicted != y0)}
    print(f"naive on inverse-fmnist (1 pair), seed {args.seed}; final model fitted to user 1 (9 - y)")
    print(f"{'prediction for user 1':22s} {'share':>6s} {'per-instance logit cos':>23s} {'shared LoRA cos':>16s}")
    for name, mask in parts.items():
        if not mask.any():
            continue
        with torch.no_grad():
            p = model(x1[mask]).softmax(1)  # the inputs differ only in the user channel
            q = model(x0[mask]).softmax(1)
        g0, g1 = q - F.one_hot(y0[mask], 10), p - F.one_hot(y1[mask], 10)  # (n, C)
        per_instance = F.cosine_similarity(g0, g1, dim=1).mean().item()
        shared = F.cosine_similarity(shared_gradient(model, x0[mask], y0[mask], A),
                                     shared_gradient(model, x1[mask], y1[mask], A), dim=0).item()
        print(f"{name:22s} {mask.float().mean().item():6.2f} {per_instance:+23.3f} {shared:+16.3f}")


if __name__ == "__main__":
    main()
