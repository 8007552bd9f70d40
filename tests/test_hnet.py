"""hnet: the task-embedding hypernetwork with its output regulariser and entropy-based task inference."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hywu_bench.config import resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.memory import MemoryBytes
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS, STRATEGIES
from hywu_bench.runner import run
from hywu_bench.settings import resolve_hyperparameters
from hywu_bench.training import TaskMaskPlugin, TrainingSetup, module_bytes
from strategies.hnet.strategy import HNetModel, infer_task_by_entropy

SHAPE = (1, 8, 8)


def hnet_model(infer_task: bool = False, n_classes: int = 4, beta: float = 0.5) -> HNetModel:
    base = build_backbone("mlp", SHAPE, n_classes, seed=0)
    return HNetModel(base, (), rank=2, alpha=2.0, embedding_dim=8, hidden=16, beta=beta, infer_task=infer_task)


def build(setting: str = "task", **options):
    sets = [f"setting={setting}"] + [f"strategy.{k}={v}" for k, v in options.items()]
    spec = resolve_spec(flags=dict(strategy="hnet", epochs=1), sets=sets)
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    info = scenario.info
    plugins = [TaskMaskPlugin(info)] if info.task_aware else []
    setup = TrainingSetup(resolve_hyperparameters(spec, info), info, torch.device("cpu"), 1, 32, 0.05, plugins)
    model = build_backbone("mlp", info.input_shape, info.n_classes, 0)
    return scenario, STRATEGIES.build("hnet", model, setup, **options)


def test_untrained_task_gives_the_base_output():
    model = hnet_model()
    reference = copy.deepcopy(model.base).eval()
    model.begin_experience(task=0, classes=[0, 1], trains=True)
    x = torch.randn(3, *SHAPE)
    assert torch.equal(model(x, torch.zeros(3, dtype=torch.long)), reference(x))  # training path
    model.eval()
    assert torch.equal(model(x, torch.tensor([0, 5, 0])), reference(x))  # label path, and an unknown label


def test_regulariser_is_zero_after_the_snapshot_and_grows_when_the_hypernetwork_moves():
    model = hnet_model(beta=0.5)
    model.begin_experience(task=0, classes=[0, 1], trains=True)
    assert model.regulariser().item() == 0.0  # nothing learnt before
    model.end_experience()
    model.begin_experience(task=1, classes=[2, 3], trains=True)
    assert model.snapshots.shape == (1, model.n_outputs)
    assert model.regulariser().item() == 0.0
    moves = []
    for step in (1e-3, 1e-2):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p in moved.generator.parameters():
                p.add_(step)
        moves.append(moved.regulariser().item())
    assert 0 < moves[0] < moves[1]
    # the exact value: beta / |old| * ||h(e_0) - snapshot||^2
    drift = moved.flat_outputs([0]) - model.snapshots[[0]]
    assert moves[1] == pytest.approx(0.5 * drift.pow(2).sum().item(), rel=1e-5)
    # the current embedding is excluded: moving only it costs nothing
    with torch.no_grad():
        model.embeddings[1].add_(1.0)
    assert model.regulariser().item() == 0.0


def test_old_embeddings_are_frozen_and_the_current_one_learns():
    model = hnet_model()
    model.begin_experience(task=0, classes=[0, 1], trains=True)
    model.end_experience()
    model.begin_experience(task=1, classes=[2, 3], trains=True)
    assert [e.requires_grad for e in model.embeddings] == [False, True]
    # the old one's snapshot (float32) is stored; both embeddings (float32), their task labels (int64) and
    # class masks (bool) are parameters of the deployed model, with the hypernetwork
    assert model.memory_bytes() == MemoryBytes(model_state=model.n_outputs * 4,
                                               extra_parameters=module_bytes(model.generator) + 2 * (8 * 4 + 8 + 4))


def test_entropy_picks_the_most_confident_task():
    logits = torch.tensor([[[0.0, 0.0, 9.0, 0.0]], [[0.0, 3.0, 0.0, 5.0]]])  # (K=2, B=1, C=4)
    assert infer_task_by_entropy(logits).tolist() == [0]
    allowed = torch.tensor([[True, True, False, False], [False, False, True, True]])
    assert infer_task_by_entropy(logits, allowed).tolist() == [1]  # within-task: task 0 is uniform


def test_inferred_task_on_a_constructed_case():
    model = hnet_model(infer_task=True)
    model.begin_experience(task=0, classes=[0, 1], trains=True)
    model.end_experience()
    model.begin_experience(task=0, classes=[2, 3], trains=True)  # class-incremental: same label, new embedding
    model.end_experience()
    assert len(model.embeddings) == 2
    model.eval()
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():  # the base alone decides (generated B is still zero): set the head by hand
        model.base.head.weight.zero_()
        model.base.head.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # task 0 uniform, task 1 confident
    out = model(x, torch.zeros(2, dtype=torch.long))
    assert out.argmax(1).tolist() == [2, 2]
    with torch.no_grad():
        model.base.head.bias.copy_(torch.tensor([0.0, 4.0, 1.0, 1.0]))  # now task 0 is the confident one
    out = model(x, torch.zeros(2, dtype=torch.long))
    assert out.argmax(1).tolist() == [1, 1]
    assert (out[:, 2:] < -1e3).all()  # predictions stay inside the inferred task's classes


def test_builder_rejects_class_incremental_without_infer_task():
    with pytest.raises(UserError, match="infer_task=true"):
        build(setting="class")
    _, strategy = build(setting="class", infer_task="true")
    assert strategy.model.infer_task


def test_state_round_trips_through_state_dict():
    scenario, strategy = build()
    for exp in list(scenario.train_stream)[:2]:
        strategy.train(exp)
    frozen = {n: p.detach().clone() for n, p in strategy.model.base.named_parameters() if not n.startswith("head.")}
    strategy.train(scenario.train_stream[2])
    for n, p in strategy.model.base.named_parameters():
        if not n.startswith("head."):
            assert torch.equal(p, frozen[n]), n  # the base stays frozen
    _, fresh = build()
    fresh.load_state_dict(strategy.state_dict())
    assert len(fresh.model.embeddings) == 3
    assert fresh.memory_bytes() == strategy.memory_bytes() and fresh.stored_memory_bytes() > 0
    x, t = torch.randn(6, *SHAPE), torch.tensor([0, 1, 2, 0, 1, 2])
    strategy.model.eval(), fresh.model.eval()
    assert torch.equal(fresh.model(x, t), strategy.model(x, t))
    assert fresh.model.regulariser().item() == pytest.approx(0.0)


@pytest.mark.parametrize("sets", [["setting=task"], ["strategy.infer_task=true"]])
def test_runs_a_short_stream(sets, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "hnet-runs"
    record = run(resolve_spec(flags=dict(strategy="hnet", epochs=1, name="hnet-" + str(len(sets[0]))), sets=sets),
                 out=out)
    assert record.R.shape == (5, 5) and not math.isnan(record.metrics["acc"])
    assert record.metrics["stored_memory_bytes"] > 0
