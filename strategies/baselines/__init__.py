"""Baselines on Avalanche's own strategies and plugins, on the harness's tensor data path.

Each is `HarnessTemplate` (Avalanche's SupervisedTemplate) plus the Avalanche plugin that defines the
method, so what runs is Avalanche's implementation (`strategy.py`, imported only when a run starts).
Defaults are the usual ones from the papers' small-scale settings and Avalanche's examples; every one is
an option (`--set strategy.KEY=VALUE`).

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

A memory budget (`--set memory_budget=1.4MiB`) sizes replay's `mem_size` and A-GEM's `patterns_per_exp`
(`budget=Budget(...)` below; docs/memory.md); the others keep what they keep and are marked over or under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hywu_bench.memory import Budget
from hywu_bench.registry import ALL_SETTINGS, STRATEGIES

BUILD = "strategies.baselines.strategy:"


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass(frozen=True)
class ReplayOptions:
    mem_size: int = 200  # raw inputs kept in the buffer, in total
    buffer: Literal["class", "experience"] = "class"  # balance the buffer over classes or experiences

    def __post_init__(self) -> None:
        if self.mem_size <= 0:
            raise ValueError(f"mem_size must be > 0 (got {self.mem_size})")


@dataclass(frozen=True)
class EWCOptions:
    ewc_lambda: float = 100.0  # strength of the quadratic penalty
    mode: Literal["separate", "online"] = "separate"
    decay_factor: float | None = None  # online mode only


@dataclass(frozen=True)
class LwFOptions:
    alpha: float = 1.0  # weight of the distillation loss
    temperature: float = 2.0


@dataclass(frozen=True)
class SIOptions:
    si_lambda: float = 1.0
    eps: float = 1e-7


@dataclass(frozen=True)
class AGEMOptions:
    patterns_per_exp: int = 50  # raw inputs stored per experience
    sample_size: int = 64  # stored inputs drawn to compute the reference gradient


STRATEGIES.register("naive", help="fine-tune on each experience in turn (the lower bound)",
                    settings=ALL_SETTINGS, options=NoOptions, builder=BUILD + "build_naive")
STRATEGIES.register("joint", help="offline training on all experiences at once (upper bound; final row only)",
                    settings=ALL_SETTINGS, options=NoOptions, builder=BUILD + "build_joint", role="reference")
STRATEGIES.register("cumulative", help="retrain on all data seen so far at every experience",
                    settings=ALL_SETTINGS, options=NoOptions, builder=BUILD + "build_cumulative", role="reference")
STRATEGIES.register("replay", help="experience replay with a balanced buffer of raw inputs",
                    settings=ALL_SETTINGS, options=ReplayOptions, builder=BUILD + "build_replay",
                    budget=Budget("mem_size", item_extra=4))  # + Avalanche's float32 reservoir weight per item
STRATEGIES.register("ewc", help="elastic weight consolidation (Kirkpatrick et al. 2017)",
                    settings=ALL_SETTINGS, options=EWCOptions, builder=BUILD + "build_ewc")
STRATEGIES.register("si", help="synaptic intelligence (Zenke et al. 2017)",
                    settings=ALL_SETTINGS, options=SIOptions, builder=BUILD + "build_si")
STRATEGIES.register("lwf", help="learning without forgetting: distil the previous model (Li & Hoiem 2016)",
                    settings=ALL_SETTINGS, options=LwFOptions, builder=BUILD + "build_lwf")
STRATEGIES.register("agem", help="averaged gradient episodic memory (Chaudhry et al. 2019)",
                    settings=ALL_SETTINGS, options=AGEMOptions, builder=BUILD + "build_agem",
                    budget=Budget("patterns_per_exp", per="experience"))
