"""The baselines' builders: Avalanche's own strategies and plugins on the harness template (declared,
with their options, in `strategies/baselines/__init__.py`)."""

from __future__ import annotations

from typing import Any

from avalanche.training import JointTraining
from avalanche.training.plugins import AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin, SynapticIntelligencePlugin
from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer
from torch import nn

from hywu_bench.data import dataset_tensors
from hywu_bench.memory import MemoryBytes
from hywu_bench.training import (
    CheckpointMixin,
    HarnessTemplate,
    PrecisionMixin,
    TensorLoadersMixin,
    TrainingSetup,
    tensor_bytes,
)
from strategies.baselines import AGEMOptions, EWCOptions, LwFOptions, NoOptions, ReplayOptions, SIOptions


def _template(model: nn.Module, setup: TrainingSetup, *plugins: Any) -> HarnessTemplate:
    return HarnessTemplate(model=model, optimizer=setup.optimizer(model.parameters()),
                           **setup.template_kwargs(plugins))


def build_naive(model: nn.Module, setup: TrainingSetup, options: NoOptions) -> HarnessTemplate:
    return _template(model, setup)


class HarnessJoint(PrecisionMixin, CheckpointMixin, TensorLoadersMixin, JointTraining):
    """Avalanche's JointTraining (offline: one `train(stream)` over all experiences)."""

    offline = True


def build_joint(model: nn.Module, setup: TrainingSetup, options: NoOptions) -> HarnessJoint:
    return HarnessJoint(model=model, optimizer=setup.optimizer(model.parameters()), **setup.template_kwargs())


class CumulativeTemplate(HarnessTemplate):
    """Avalanche's Cumulative, on the harness template: train on the union of all experiences so far."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.dataset = None

    def train_dataset_adaptation(self, **kwargs: Any) -> None:
        exp = self.experience.dataset
        self.dataset = exp if self.dataset is None else self.dataset.concat(exp)
        self.adapted_dataset = self.dataset.train()

    def memory_bytes(self) -> MemoryBytes:
        """Every input seen so far, with its label and condition token."""
        tensors = dataset_tensors(self.dataset) if self.dataset is not None else None
        return super().memory_bytes() + MemoryBytes(raw_inputs=tensor_bytes((tensors or [])[:-1]))

    def strategy_state(self) -> dict[str, Any]:
        from hywu_bench.checkpoint import to_plain

        return {**super().strategy_state(), "seen": to_plain(self.dataset)}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        from hywu_bench.checkpoint import from_plain

        super().load_strategy_state(state)
        self.dataset = from_plain(state["seen"])


def build_cumulative(model: nn.Module, setup: TrainingSetup, options: NoOptions) -> CumulativeTemplate:
    return CumulativeTemplate(model=model, optimizer=setup.optimizer(model.parameters()),
                              **setup.template_kwargs())


def build_replay(model: nn.Module, setup: TrainingSetup, options: ReplayOptions) -> HarnessTemplate:
    policy = (ClassBalancedBuffer(options.mem_size, adaptive_size=True) if options.buffer == "class"
              else ExperienceBalancedBuffer(options.mem_size, adaptive_size=True))
    return _template(model, setup, ReplayPlugin(mem_size=options.mem_size, storage_policy=policy))


def build_ewc(model: nn.Module, setup: TrainingSetup, options: EWCOptions) -> HarnessTemplate:
    decay = options.decay_factor if options.mode == "online" else None
    if options.mode == "online" and decay is None:
        decay = 0.9
    return _template(model, setup, EWCPlugin(options.ewc_lambda, mode=options.mode, decay_factor=decay))


def build_lwf(model: nn.Module, setup: TrainingSetup, options: LwFOptions) -> HarnessTemplate:
    return _template(model, setup, LwFPlugin(options.alpha, options.temperature))


def build_si(model: nn.Module, setup: TrainingSetup, options: SIOptions) -> HarnessTemplate:
    return _template(model, setup, SynapticIntelligencePlugin(options.si_lambda, eps=options.eps))


def build_agem(model: nn.Module, setup: TrainingSetup, options: AGEMOptions) -> HarnessTemplate:
    return _template(model, setup, AGEMPlugin(options.patterns_per_exp, options.sample_size))
