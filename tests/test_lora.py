"""The LoRA family: lora, lora-per-task (oracle), olora."""

from __future__ import annotations

import copy

import pytest
import torch

from hywu_bench.config import resolve_spec
from hywu_bench.memory import MemoryBytes
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS, STRATEGIES
from hywu_bench.runner import run
from hywu_bench.settings import resolve_hyperparameters
from hywu_bench.training import TaskMaskPlugin, TrainingSetup
from strategies.lora.strategy import OLoRAModel, PerTaskLoRAModel, SharedLoRAModel, site_key
from strategies.lowrank import use_factors

SHAPE = (1, 8, 8)


def scenario_and_setup(strategy: str, setting: str = "class", **options):
    sets = [f"setting={setting}"] + [f"strategy.{k}={v}" for k, v in options.items()]
    spec = resolve_spec(flags=dict(strategy=strategy, epochs=1), sets=sets)
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    info = scenario.info
    resolved = resolve_hyperparameters(spec, info)
    plugins = [TaskMaskPlugin(info)] if info.task_aware else []
    setup = TrainingSetup(resolved, info, torch.device("cpu"), 1, 32, 0.05, plugins)
    return scenario, setup


def build(strategy: str, setting: str = "class", **options):
    scenario, setup = scenario_and_setup(strategy, setting, **options)
    model = build_backbone("mlp", setup.info.input_shape, setup.info.n_classes, 0)
    return scenario, STRATEGIES.build(strategy, model, setup, **options)


def randomise(adapter, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.lora_B.values():
            p.copy_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
@pytest.mark.parametrize("cls", [SharedLoRAModel, PerTaskLoRAModel, OLoRAModel])
def test_zero_lora_B_gives_the_base_output(backbone, cls):
    shape = (1, 12, 12)
    base = build_backbone(backbone, shape, 4, seed=0)
    reference = copy.deepcopy(base).eval()
    args = (0.5,) if cls is OLoRAModel else ()
    model = cls(base, (), 4, 8.0, *args).eval()
    if cls is not SharedLoRAModel:
        model.begin_experience(task=0, classes=[0, 1], trains=True)
    x = torch.randn(5, *shape)
    assert torch.equal(model(x, torch.zeros(5, dtype=torch.long)), reference(x))
    assert set(model.sites) == set(base.adapter_sites)


def test_lora_init_is_peft_like():
    model = SharedLoRAModel(build_backbone("mlp", SHAPE, 10, 0), (), 4, 8.0)
    adapter = model.adapters[0]
    A, B = adapter.lora_A[site_key("fc1")], adapter.lora_B[site_key("fc1")]
    assert A.shape == (4, 64) and B.shape == (256, 4)
    assert A.abs().max() <= 1 / 64 ** 0.5 and A.std() > 0 and torch.count_nonzero(B) == 0
    assert model.sites["fc1"].scaling == 2.0


def test_base_is_unchanged_across_an_experience_and_adapters_learn():
    scenario, strategy = build("lora")
    base = strategy.model.base
    frozen = {n: p.detach().clone() for n, p in base.named_parameters() if not n.startswith("head.")}
    head = base.head.weight.detach().clone()
    strategy.train(scenario.train_stream[1])
    for n, p in base.named_parameters():
        if not n.startswith("head."):
            assert torch.equal(p, frozen[n]), n
    assert not torch.equal(base.head.weight, head)
    assert torch.count_nonzero(strategy.model.adapters[0].lora_B[site_key("fc2")]) > 0
    assert strategy.stored_memory_bytes() == 0  # one live adapter: model state, nothing kept for the past


def test_olora_orthogonality_loss_is_zero_for_orthogonal_subspaces():
    model = OLoRAModel(build_backbone("mlp", SHAPE, 10, 0), ("fc2",), 2, 2.0, lambda_orth=0.5)
    model.begin_experience(task=0, classes=[0], trains=True)
    model.end_experience()
    model.begin_experience(task=0, classes=[1], trains=True)
    old, new = model.adapters[0].lora_A["fc2"], model.adapters[1].lora_A["fc2"]
    eye = torch.eye(256)
    with torch.no_grad():
        old.copy_(eye[:2])
        new.copy_(3 * eye[2:4])
    assert model.orthogonality_loss().item() == 0.0
    with torch.no_grad():
        new[0, 0] = 0.25  # overlaps old row 0
        new[1, 1] = -0.5  # overlaps old row 1
    assert model.orthogonality_loss().item() == pytest.approx(0.75)
    assert model.penalty().item() == pytest.approx(0.375)
    assert new.requires_grad and not old.requires_grad


def test_olora_sums_all_adapters():
    model = OLoRAModel(build_backbone("mlp", SHAPE, 10, 0), (), 2, 2.0, lambda_orth=0.5).eval()
    for task in range(2):
        model.begin_experience(task=task, classes=[task], trains=True)
        randomise(model.adapters[-1], seed=task)
        model.end_experience()
    x = torch.randn(3, *SHAPE)
    fc1 = model.sites["fc1"]
    merged = sum(fc1.delta_weight(a.lora_A["fc1"], a.lora_B["fc1"]) for a in model.adapters)
    h = x.flatten(1) @ (fc1.base_layer.weight + merged).T + fc1.base_layer.bias
    factors = model.factors(x, None)
    assert factors["fc1"][0].shape == (4, 64) and factors["fc1"][1].shape == (256, 4)  # rank 2 R
    with use_factors(model.sites, factors):
        assert torch.allclose(fc1(x.flatten(1)), h, atol=1e-5)


def test_lora_per_task_picks_the_adapter_by_task_label():
    model = PerTaskLoRAModel(build_backbone("mlp", SHAPE, 10, 0), (), 4, 4.0).eval()
    for task in (1, 2):
        model.begin_experience(task=task, classes=[task], trains=True)
        randomise(model.adapters[-1], seed=task)
        model.end_experience()
    model.begin_experience(task=0, classes=[0], trains=False)  # warm-start task: no adapter
    assert len(model.adapters) == 2
    x = torch.randn(4, *SHAPE)
    t = torch.tensor([2, 0, 1, 3])
    out = model(x, t)
    with torch.no_grad():
        for i, label in enumerate(t.tolist()):
            known = model.adapter_task.tolist()
            factors = model.adapters[known.index(label)].factors() if label in known else {}
            with use_factors(model.sites, factors):
                expected = model.base(x[i:i + 1])
            assert torch.allclose(out[i:i + 1], expected, atol=1e-5), label
    assert not torch.allclose(out[0], out[2])


def test_state_round_trips_through_state_dict():
    scenario, strategy = build("olora")
    for exp in list(scenario.train_stream)[1:3]:
        strategy.train(exp)
    state = strategy.state_dict()
    _, fresh = build("olora")
    fresh.load_state_dict(state)
    fresh.optimizer.load_state_dict(strategy.optimizer.state_dict())  # rebuilt per experience: a no-op
    assert len(fresh.model.adapters) == 2
    assert fresh.memory_bytes() == strategy.memory_bytes() == MemoryBytes(extra_parameters=2 * ADAPTER)
    x = torch.randn(6, *SHAPE)
    t = torch.zeros(6, dtype=torch.long)
    strategy.model.eval(), fresh.model.eval()
    assert torch.equal(fresh.model(x, t), strategy.model(x, t))


def test_lora_per_task_only_runs_task_incremental(tmp_path):
    from hywu_bench.errors import UserError

    with pytest.raises(UserError, match="task"):
        run(resolve_spec(flags=dict(strategy="lora-per-task", epochs=1)), out=tmp_path)
    assert "ORACLE" in STRATEGIES.get("lora-per-task").help


ADAPTER = (8 * 64 + 256 * 8 + 8 * 256 + 256 * 8) * 4  # rank 8 at fc1 (64 -> 256) and fc2 (256 -> 256), float32


@pytest.mark.parametrize("strategy, sets, extra", [
    ("lora", [], ADAPTER),  # the one shared adapter
    ("olora", [], 4 * ADAPTER),  # one per experience after the warm-start one
    ("lora-per-task", ["setting=task"], 4 * (ADAPTER + 8)),  # and the task label each one serves
])
def test_runs_a_short_stream(strategy, sets, extra, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "lora-runs"
    record = run(resolve_spec(flags=dict(strategy=strategy, epochs=1), sets=sets), out=out)
    assert record.R.shape == (5, 5)
    # adapters are parameters of the deployed model, not memory kept for the past
    assert record.metrics["memory"] == {"raw_inputs": 0, "derived": 0, "model_state": 0, "extra_parameters": extra}
    assert record.metrics["stored_memory_bytes"] == 0
    after_one = record.metrics["per_experience"][1]["memory"]["extra_parameters"]
    assert after_one == (extra if strategy == "lora" else extra // 4)  # one adapter after the first trained experience
    if strategy == "lora-per-task":  # each task keeps its own adapter and its own classes: no forgetting
        assert record.metrics["forgetting"] == pytest.approx(0.0)
