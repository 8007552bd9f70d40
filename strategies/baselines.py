"""Baselines on Avalanche's own strategies and plugins, on the harness's tensor data path.

Each is `HarnessTemplate` (Avalanche's SupervisedTemplate) plus the Avalanche plugin that defines the
method, so what runs is Avalanche's implementation. Defaults are the usual ones from the papers'
small-scale settings and Avalanche's examples; every one is an option (`--set strategy.KEY=VALUE`).

| name       | method                                           | reference                          |
|------------|--------------------------------------------------|------------------------------------|
| naive      | fine-tune on each experience in turn (lower bound) |                                  |
| joint      | train once on all experiences together (offline upper bound; only the final row of R) | |
| cumulative | retrain on all data seen so far at each experience | (an upper bound for replay)      |
| replay     | experience replay, class-balanced buffer of `mem_size` raw inputs | Rolnick et al. 2019 |
| ewc        | elastic weight consolidation                      | Kirkpatrick et al. 2017            |
| lwf        | learning without forgetting (distillation)        | Li & Hoiem 2016                    |
| si         | synaptic intelligence                             | Zenke et al. 2017                  |
| agem       | averaged gradient episodic memory                 | Chaudhry et al. 2019               |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from avalanche.training import JointTraining
from avalanche.training.plugins import AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin, SynapticIntelligencePlugin
from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer
from torch import nn

from hywu_bench.registry import ALL_SETTINGS, STRATEGIES
from hywu_bench.training import CheckpointMixin, HarnessTemplate, PrecisionMixin, TensorLoadersMixin, TrainingSetup


@dataclass(frozen=True)
class NoOptions:
    pass


def _template(model: nn.Module, setup: TrainingSetup, *plugins: Any) -> HarnessTemplate:
    return HarnessTemplate(model=model, optimizer=setup.optimizer(model.parameters()),
                           **setup.template_kwargs(plugins))


@STRATEGIES.register("naive", help="fine-tune on each experience in turn (the lower bound)",
                     settings=ALL_SETTINGS, options=NoOptions)
def build_naive(model: nn.Module, setup: TrainingSetup, options: NoOptions) -> HarnessTemplate:
    return _template(model, setup)


class HarnessJoint(PrecisionMixin, CheckpointMixin, TensorLoadersMixin, JointTraining):
    """Avalanche's JointTraining (offline: one `train(stream)` over all experiences)."""

    offline = True


@STRATEGIES.register("joint", help="offline training on all experiences at once (upper bound; final row only)",
                     settings=ALL_SETTINGS, options=NoOptions)
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

    def strategy_state(self) -> dict[str, Any]:
        from hywu_bench.checkpoint import to_plain

        return {**super().strategy_state(), "seen": to_plain(self.dataset)}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        from hywu_bench.checkpoint import from_plain

        super().load_strategy_state(state)
        self.dataset = from_plain(state["seen"])


@STRATEGIES.register("cumulative", help="retrain on all data seen so far at every experience",
                     settings=ALL_SETTINGS, options=NoOptions)
def build_cumulative(model: nn.Module, setup: TrainingSetup, options: NoOptions) -> CumulativeTemplate:
    return CumulativeTemplate(model=model, optimizer=setup.optimizer(model.parameters()),
                              **setup.template_kwargs())


@dataclass(frozen=True)
class ReplayOptions:
    mem_size: int = 200  # raw inputs kept in the buffer, in total
    buffer: Literal["class", "experience"] = "class"  # balance the buffer over classes or experiences

    def __post_init__(self) -> None:
        if self.mem_size <= 0:
            raise ValueError(f"mem_size must be > 0 (got {self.mem_size})")


@STRATEGIES.register("replay", help="experience replay with a balanced buffer of raw inputs",
                     settings=ALL_SETTINGS, options=ReplayOptions)
def build_replay(model: nn.Module, setup: TrainingSetup, options: ReplayOptions) -> HarnessTemplate:
    policy = (ClassBalancedBuffer(options.mem_size, adaptive_size=True) if options.buffer == "class"
              else ExperienceBalancedBuffer(options.mem_size, adaptive_size=True))
    return _template(model, setup, ReplayPlugin(mem_size=options.mem_size, storage_policy=policy))


@dataclass(frozen=True)
class EWCOptions:
    ewc_lambda: float = 100.0  # strength of the quadratic penalty
    mode: Literal["separate", "online"] = "separate"
    decay_factor: float | None = None  # online mode only


@STRATEGIES.register("ewc", help="elastic weight consolidation (Kirkpatrick et al. 2017)",
                     settings=ALL_SETTINGS, options=EWCOptions)
def build_ewc(model: nn.Module, setup: TrainingSetup, options: EWCOptions) -> HarnessTemplate:
    decay = options.decay_factor if options.mode == "online" else None
    if options.mode == "online" and decay is None:
        decay = 0.9
    return _template(model, setup, EWCPlugin(options.ewc_lambda, mode=options.mode, decay_factor=decay))


@dataclass(frozen=True)
class LwFOptions:
    alpha: float = 1.0  # weight of the distillation loss
    temperature: float = 2.0


@STRATEGIES.register("lwf", help="learning without forgetting: distil the previous model (Li & Hoiem 2016)",
                     settings=ALL_SETTINGS, options=LwFOptions)
def build_lwf(model: nn.Module, setup: TrainingSetup, options: LwFOptions) -> HarnessTemplate:
    return _template(model, setup, LwFPlugin(options.alpha, options.temperature))


@dataclass(frozen=True)
class SIOptions:
    si_lambda: float = 1.0
    eps: float = 1e-7


@STRATEGIES.register("si", help="synaptic intelligence (Zenke et al. 2017)", settings=ALL_SETTINGS,
                     options=SIOptions)
def build_si(model: nn.Module, setup: TrainingSetup, options: SIOptions) -> HarnessTemplate:
    return _template(model, setup, SynapticIntelligencePlugin(options.si_lambda, eps=options.eps))


@dataclass(frozen=True)
class AGEMOptions:
    patterns_per_exp: int = 50  # raw inputs stored per experience
    sample_size: int = 64  # stored inputs drawn to compute the reference gradient


@STRATEGIES.register("agem", help="averaged gradient episodic memory (Chaudhry et al. 2019)",
                     settings=ALL_SETTINGS, options=AGEMOptions)
def build_agem(model: nn.Module, setup: TrainingSetup, options: AGEMOptions) -> HarnessTemplate:
    return _template(model, setup, AGEMPlugin(options.patterns_per_exp, options.sample_size))
