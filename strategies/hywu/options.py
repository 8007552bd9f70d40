"""HY-WU's options, and the options it recommends per scenario family: light (no torch), so that `list`
and every validation error answer without importing the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ARCHITECTURES = ("mlp", "tokens", "bank")  # generator designs (generator.py)
KINDS = ("features", "input", "token", "task")  # condition kinds (condition.py)


def parse_condition(spec: str) -> tuple[str, ...]:
    """'features+token' -> ('features', 'token'), checked against KINDS."""
    kinds = tuple(k.strip() for k in spec.split("+") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise ValueError(f"condition '{spec}': unknown kind {bad or spec!r}; use kinds from "
                         f"{', '.join(KINDS)} joined with '+', e.g. 'features+token'")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"condition '{spec}' names a kind twice")
    return kinds


ANCHOR_DTYPES = ("float32", "float16", "int8")  # how anchors are stored (memory.py)
SNAPSHOT_DTYPES = ("float32", "float16")  # how the snapshot of generated updates is stored
AnchorDtype = Literal["float32", "float16", "int8"]
SnapshotDtype = Literal["float32", "float16"]


@dataclass(frozen=True)
class HYWUOptions:
    rank: int = 1  # rank of each generated update (of each bank basis: the bank's update has rank <= K r)
    alpha: float = 8.0  # scaling = alpha / rank, as in LoRA
    sites: tuple[str, ...] = ()  # layers to adapt; empty: after the condition layer (model.resolve_layout)
    head: bool = True  # the generator adapts the output layer too (room for new classes under the memory)
    generator: Literal["bank", "mlp", "tokens"] = "bank"  # bank: K mixing coefficients per site (lean)
    bank_size: int = 24  # K bases per site (bank)
    hidden: int = 64  # generator width (mlp trunk, bank coefficient net); bank only: 0 = a linear router
    train_bank_A: bool = True  # False: the bank's A factors stay at their random init (cheaper)
    condition: str = "auto"  # kinds joined by '+'; auto: features, or features+token on token streams
    condition_layer: str = "auto"  # base layer read by `features`; auto: the first hidden Linear, else the
    # output layer's input ("penultimate"); model.resolve_layout
    anchors_per_experience: int = 200  # condition anchors kept from each experience
    anchor_selection: Literal["random", "herding"] = "random"  # herding: per class, near the class mean
    anchors_per_step: int = 64  # anchors drawn for rehearsal and the regulariser at every step
    rehearsal: float | None = None  # weight of the anchors' cross-entropy, run through the model where it can
    # be; None: 2 where the bank generates the head alone, else 1 (strategy.HYWUStrategy.rehearsal)
    beta: float | None = None  # weight of the regulariser on the anchors' updates; None: 0 if rehearsed, else 3
    anchor_dtype: AnchorDtype = "int8"  # float32, float16, or int8 with a float16 scale per anchor
    snapshot_dtype: SnapshotDtype = "float32"  # the snapshot of the anchors' generated updates
    anti_collapse: float = 0.0  # weight of the squared-cosine penalty between instances' updates
    balance: float | None = None  # bank: weight of KL(batch-mean mixing || uniform), against one basis taking
    # all; None: 1 where the bank generates the head alone, else 0 (strategy.HYWUStrategy.balance)
    lr: float = 1e-3  # learning rate of the generator (and trainable base modules)
    optimizer: Literal["adam", "run"] = "adam"  # run: the given (the run's) optimizer's class, at `lr`
    trainable: tuple[str, ...] = ()  # base modules that keep learning after the warm start, e.g. ("head",)

    def __post_init__(self) -> None:
        checks = [(self.rank >= 1, f"rank must be >= 1 (got {self.rank})"),
                  (self.alpha > 0, f"alpha must be > 0 (got {self.alpha})"),
                  (self.bank_size >= 1, f"bank_size must be >= 1 (got {self.bank_size})"),
                  (self.hidden >= (0 if self.generator == "bank" else 1),
                   f"hidden must be >= 1 (got {self.hidden}); only the bank generator takes 0 (a linear router)"),
                  (self.anchors_per_experience >= 0, "anchors_per_experience must be >= 0"),
                  (self.anchors_per_step >= 1, "anchors_per_step must be >= 1"),
                  (self.anchor_selection in ("random", "herding"),
                   f"anchor_selection must be random or herding (got {self.anchor_selection!r})"),
                  (self.rehearsal is None or self.rehearsal >= 0, f"rehearsal must be >= 0 (got {self.rehearsal})"),
                  (self.beta is None or self.beta >= 0, f"beta must be >= 0 (got {self.beta})"),
                  (self.anchor_dtype in ANCHOR_DTYPES,
                   f"anchor_dtype must be one of {', '.join(ANCHOR_DTYPES)} (got {self.anchor_dtype!r})"),
                  (self.snapshot_dtype in SNAPSHOT_DTYPES,
                   f"snapshot_dtype must be one of {', '.join(SNAPSHOT_DTYPES)} (got {self.snapshot_dtype!r})"),
                  (self.anti_collapse >= 0, f"anti_collapse must be >= 0 (got {self.anti_collapse})"),
                  (self.balance is None or self.balance >= 0, f"balance must be >= 0 (got {self.balance})"),
                  (not self.balance or self.generator == "bank",
                   f"balance weighs the bank's mixing; generator={self.generator!r} has none (set generator=bank)"),
                  (self.lr > 0, f"lr must be > 0 (got {self.lr})"),
                  (self.optimizer in ("adam", "run"), f"optimizer must be adam or run (got {self.optimizer!r})"),
                  (self.generator in ARCHITECTURES, f"generator must be one of {', '.join(ARCHITECTURES)}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.condition != "auto":
            parse_condition(self.condition)


# Options recommended per scenario family, chosen on validation splits (`--set validation=0.2`, held-out
# training data; benchmarks/hywu_validation.py), never on the test split; the user's options win key by
# key. Numbers: docs/hywu.md.
# None today: with rehearsal the defaults match or beat the earlier per-family settings on the validation
# splits (rotation and drift, the `mlp` generator at beta 20: rotated-fmnist 0.671 vs the defaults' 0.683,
# drift-fmnist 0.737 vs 0.735 with 25.6 MiB of memory against 0.5 MiB; users, lr 2e-3: preference-fmnist
# 0.765 vs 0.779 at the default 1e-3).
TUNED: dict[str, dict[str, object]] = {}
