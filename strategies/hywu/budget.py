"""How a memory budget sizes HY-WU: `anchors_per_experience`, from the bytes one anchor costs.

Measured on the strategy itself rather than computed from its shapes, so that whatever the functional
memory stores (anchor kinds, their precision, the generator's packed snapshot) is what is counted: two
anchors are stored and snapshotted in a fresh strategy; the second one's bytes are the cost per anchor
(its condition part and its share of the snapshot), and the rest is fixed (the bank's bases, which the
snapshot keeps once).
"""

from __future__ import annotations

from typing import Any

import torch

from hywu_bench.models import build_backbone
from hywu_bench.training import TrainingSetup
from strategies.hywu.options import HYWUOptions


def anchor_costs(spec: Any, info: Any, options: HYWUOptions) -> tuple[int, int]:
    """(fixed bytes, bytes per anchor) of HY-WU's functional memory for this run."""
    with torch.random.fork_rng(devices=[]):  # sizing must not move the run's random stream
        return _measure(spec, info, options)


def _measure(spec: Any, info: Any, options: HYWUOptions) -> tuple[int, int]:
    from strategies.hywu.strategy import build_hywu

    backbone = build_backbone(spec.backbone, info.input_shape, info.n_classes, spec.seed)
    setup = TrainingSetup(spec, info, torch.device("cpu"), spec.epochs, spec.batch_size, spec.lr)
    strategy = build_hywu(backbone, setup, options)
    x = torch.rand(2, *info.input_shape)  # (2, C, H, W)
    token = torch.zeros(2, info.condition_dim) if info.condition_dim else None
    strategy.model.rehearsable(x)  # rehearsed anchors need no snapshot (the default beta then is 0)
    raw = strategy.model.condition_raw(x, token, torch.zeros(2, dtype=torch.long))
    totals = []
    for k in range(2):
        strategy.memory.add({kind: v[k:k + 1] for kind, v in raw.items()}, labels=torch.zeros(1, dtype=torch.long))
        strategy.snapshot()
        totals.append(strategy.memory.nbytes())
    per_anchor = totals[1] - totals[0]
    return totals[0] - per_anchor, per_anchor
