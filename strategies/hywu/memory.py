"""Functional memory: condition anchors and a snapshot of the updates generated for them.

Anchors are the frozen, storable part of each instance's condition (`ConditionEncoder.raw`): feature
vectors, input projections, condition tokens or task ids; never raw inputs. The snapshot is the
generator's output for every anchor in the generator's packed form (the bank stores its bases once and
K coefficients per anchor), replaced after every experience, as von Oswald et al. (2020) regularise
towards the hypernetwork of the previous task.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from strategies.hywu.generator import factor_bytes
from strategies.lowrank import Factors


class FunctionalMemory:
    def __init__(self) -> None:
        self.anchors: dict[str, Tensor] = {}  # kind -> (N, ...) frozen condition parts
        self.packed: dict[str, Factors] | None = None  # site -> packed factors for all N anchors

    def __len__(self) -> int:
        return next(iter(self.anchors.values())).shape[0] if self.anchors else 0

    def add(self, raw: dict[str, Tensor]) -> None:
        if self.anchors and set(raw) != set(self.anchors):
            raise ValueError(f"anchor kinds changed from {sorted(self.anchors)} to {sorted(raw)}")
        self.anchors = {k: torch.cat([self.anchors[k], v]) if k in self.anchors else v for k, v in raw.items()}

    def draw(self, k: int) -> Tensor:
        """Indices of up to k anchors, without replacement."""
        return torch.randperm(len(self))[:k]

    def raw(self, index: Tensor, device: torch.device | str) -> dict[str, Tensor]:
        return {k: v[index.to(v.device)].to(device) for k, v in self.anchors.items()}

    def set_snapshot(self, packed: dict[str, Factors]) -> None:
        self.packed = packed

    def packed_on(self, device: torch.device | str) -> dict[str, Factors]:
        if self.packed is None:
            raise RuntimeError("no snapshot taken yet")
        if any(t.device != torch.device(device) for f in self.packed.values() for t in f):
            self.packed = {s: tuple(t.to(device) for t in f) for s, f in self.packed.items()}  # type: ignore[misc]
        return self.packed

    def anchor_bytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.anchors.values())

    def snapshot_bytes(self) -> int:
        return factor_bytes(self.packed) if self.packed is not None else 0

    def nbytes(self) -> int:
        return self.anchor_bytes() + self.snapshot_bytes()

    def state_dict(self) -> dict[str, Any]:
        packed = None if self.packed is None else {s: [t.cpu() for t in f] for s, f in self.packed.items()}
        return {"anchors": {k: v.cpu() for k, v in self.anchors.items()}, "packed": packed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors = dict(state["anchors"])
        packed = state.get("packed")
        self.packed = None if packed is None else {s: tuple(f) for s, f in packed.items()}
