"""The data_path switch: Avalanche's own loaders instead of the tensor path, and (slow) the two agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from avalanche.core import SupervisedPlugin

from hywu_bench.config import resolve_spec
from hywu_bench.data import TensorLoader
from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins
from hywu_bench.runner import run
from hywu_bench.settings import resolve_hyperparameters


@pytest.mark.parametrize("data_path,packages", [("tensor", {"hywu_bench"}), ("avalanche", {"avalanche", "torch"})])
def test_data_path_chooses_the_loader(data_path, packages):
    load_builtins()
    spec = resolve_spec(flags=dict(strategy="naive", epochs=1, device="cpu"), sets=[f"data_path={data_path}"])
    scenario = SCENARIOS.build(spec.scenario, spec)
    resolved = resolve_hyperparameters(spec, scenario.info)
    from hywu_bench.models import build_backbone
    from hywu_bench.training import TrainingSetup

    seen = LoaderTypes()
    model = build_backbone(resolved.backbone, scenario.info.input_shape, scenario.info.n_classes, 0)
    setup = TrainingSetup(resolved, scenario.info, "cpu", 1, resolved.batch_size, resolved.lr, [seen])
    strategy = STRATEGIES.build("naive", model, setup)
    strategy.data_path = resolved.data_path
    strategy.train(scenario.train_stream[0])
    strategy.eval(scenario.test_stream[:1])
    assert set(seen.types) == {"train", "eval"}
    for kind, loader in seen.types.items():  # TensorLoader, or Avalanche's (a torch DataLoader in training)
        assert loader.__module__.split(".")[0] in packages, (kind, loader)
        assert (loader is TensorLoader) == (data_path == "tensor")


class LoaderTypes(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.types = {}

    def after_training_iteration(self, strategy, *args, **kwargs):
        self.types["train"] = type(strategy.dataloader)

    def after_eval_iteration(self, strategy, *args, **kwargs):
        self.types["eval"] = type(strategy.dataloader)


def test_the_avalanche_path_runs_and_keeps_its_own_warm_start(tmp_path):
    record = run(resolve_spec(flags=dict(strategy="ewc", epochs=1, device="cpu"), sets=["data_path=avalanche"]),
                 tmp_path)
    assert record.metrics["learning_acc"] > 0.4  # each experience is learnt (class-incremental: then forgotten)
    assert len(list((tmp_path / "_warmstart").glob("*.pt"))) == 1
    run(resolve_spec(flags=dict(strategy="ewc", epochs=1, device="cpu", name="fast")), tmp_path)
    assert len(list((tmp_path / "_warmstart").glob("*.pt"))) == 2  # the tensor path's warm start is another


@pytest.mark.slow
def test_tensor_and_avalanche_paths_agree_within_the_seed_spread(tmp_path):
    """benchmarks/data_path.py's comparison as docs/internals.md reports it: naive, replay, EWC on split-fmnist,
    1 epoch per experience, 3 seeds through each path."""
    script = Path(__file__).parents[1] / "benchmarks" / "data_path.py"
    spec = importlib.util.spec_from_file_location("data_path_benchmark", script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    table = benchmark.compare_paths(["naive", "replay", "ewc"], [0, 1, 2], tmp_path, epochs=1)
    for strategy, row in table.items():
        assert row["diff_over_spread"] <= 1, (strategy, row)
