"""Memory by kind: exact bytes on small known cases, for Avalanche's plugins and the harness's strategies."""

from __future__ import annotations

import pytest
import torch

from hywu_bench.config import resolve_spec
from hywu_bench.memory import MemoryBytes
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS, STRATEGIES
from hywu_bench.settings import resolve_hyperparameters
from hywu_bench.training import TaskMaskPlugin, TrainingSetup, module_bytes, plugin_memory

DIGIT = 64 * 4 + 8  # one stored 8x8 float32 digit and its int64 label
MLP_BYTES = (64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10) * 4  # the split-digits MLP's parameters


def trained(strategy: str, n_experiences: int, sets: list[str] = ()):
    """A strategy on split-digits after `n_experiences` experiences of one epoch each."""
    spec = resolve_spec(flags=dict(strategy=strategy, epochs=1), sets=list(sets))
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    info = scenario.info
    resolved = resolve_hyperparameters(spec, info)
    plugins = [TaskMaskPlugin(info)] if info.task_aware else []  # a runner plugin: never counted
    setup = TrainingSetup(resolved, info, torch.device("cpu"), 1, 32, 0.05, plugins)
    model = build_backbone("mlp", info.input_shape, info.n_classes, 0)
    built = STRATEGIES.build(strategy, model, setup, **resolved.strategy_options)
    for exp in list(scenario.train_stream)[:n_experiences]:
        built.train(exp)
    return built


def test_kinds_add_up_and_stored_leaves_out_the_extra_parameters():
    a, b = MemoryBytes(1, 2, 3, 4), MemoryBytes(10, 20, 30, 40)
    assert a + b == MemoryBytes(11, 22, 33, 44) and (a + b).stored == 66
    assert a.to_dict() == {"raw_inputs": 1, "derived": 2, "model_state": 3, "extra_parameters": 4}


@pytest.mark.parametrize("strategy, sets, expected", [
    # replay: each buffered digit keeps its input, its label and Avalanche's float32 reservoir weight
    ("replay", ["mem_size=30"], MemoryBytes(raw_inputs=30 * (DIGIT + 4))),
    # A-GEM: 10 digits per experience; its reference gradient is recomputed every step: not memory
    ("agem", ["patterns_per_exp=10"], MemoryBytes(raw_inputs=2 * 10 * DIGIT)),
    # EWC (separate): old parameters and importances of each experience
    ("ewc", [], MemoryBytes(model_state=2 * 2 * MLP_BYTES)),
    # LwF: one copy of the previous model
    ("lwf", [], MemoryBytes(model_state=MLP_BYTES)),
    ("naive", [], MemoryBytes()),
    ("cumulative", [], MemoryBytes(raw_inputs=(254 + 252) * DIGIT)),  # all of split-digits' first two experiences
])
def test_avalanche_plugins_by_kind(strategy, sets, expected):
    built = trained(strategy, 2, sets)
    assert built.memory_bytes() == expected
    assert built.stored_memory_bytes() == expected.stored


def test_logits_kept_in_a_buffer_are_derived():
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset, make_avalanche_dataset
    from avalanche.benchmarks.utils.data_attribute import TensorDataAttribute
    from avalanche.benchmarks.utils.flat_data import FlatData

    y = torch.arange(6)
    data = _make_taskaware_tensor_classification_dataset(torch.randn(6, 1, 8, 8), y, task_labels=0, targets=y)
    logits = FlatData([[torch.randn(10) for _ in range(6)]], discard_elements_not_in_indices=True)
    with_logits = make_avalanche_dataset(data, data_attributes=[TensorDataAttribute(logits, name="logits")])

    class DERLikePlugin:  # as DER's buffer keeps them
        def __init__(self) -> None:
            self.buffer = with_logits.subset([0, 2, 4])

    assert plugin_memory(DERLikePlugin()) == MemoryBytes(raw_inputs=3 * DIGIT, derived=3 * 10 * 4)


LORA_ADAPTER = (8 * 64 + 256 * 8 + 8 * 256 + 256 * 8) * 4  # rank 8 at fc1 (64 -> 256) and fc2 (256 -> 256)


@pytest.mark.parametrize("strategy, sets, expected", [
    ("lora", [], MemoryBytes(extra_parameters=LORA_ADAPTER)),  # the one shared adapter
    ("olora", [], MemoryBytes(extra_parameters=2 * LORA_ADAPTER)),  # experience 0 trained too (no warm start here)
    ("lora-per-task", ["setting=task"], MemoryBytes(extra_parameters=2 * (LORA_ADAPTER + 8))),  # + task labels
])
def test_lora_adapters_are_extra_parameters_and_nothing_is_stored(strategy, sets, expected):
    assert trained(strategy, 2, sets).memory_bytes() == expected


def test_hywu_anchors_are_derived_its_snapshot_model_state_and_its_generator_extra():
    built = trained("hywu", 2, ["anchors_per_experience=30", "bank_size=4"])
    n = 2 * 30  # anchors: fc1's 256 outputs in int8, a float16 scale each, an int16 label
    generator = module_bytes(built.model.generator) + module_bytes(built.model.condition)
    assert built.memory_bytes() == MemoryBytes(derived=n * (256 + 2 + 2), extra_parameters=generator)  # rehearsed:
    assert generator == sum(p.numel() * 4 for p in built.model.generator.parameters()) > 0  # no snapshot
    regularised = trained("hywu", 2, ["anchors_per_experience=30", "bank_size=4", "beta=3.0"])
    sites, K, r = 2, 4, 1  # fc2 (256 -> 256) and the head (256 -> 10), rank-1 bases
    bases = (K * r * 256 + 256 * K * r + K * r * 256 + 10 * K * r) * 4  # the bank's bases, kept once
    assert regularised.memory_bytes().model_state == bases + n * sites * K * 4


def test_hnet_snapshots_are_model_state_and_its_embeddings_extra():
    built = trained("hnet", 2, ["setting=task"])
    model = built.model
    extra = module_bytes(model.generator) + 2 * (32 * 4 + 8 + 10)  # embeddings, task labels, class masks
    assert built.memory_bytes() == MemoryBytes(model_state=2 * model.n_outputs * 4, extra_parameters=extra)
