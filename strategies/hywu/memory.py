"""Functional memory: condition anchors, their labels and a snapshot of the updates generated for them.

Anchors are the frozen, storable part of each instance's condition (`ConditionEncoder.raw`): feature
vectors, input projections, condition tokens or task ids; never raw inputs. The snapshot is the
generator's output for every anchor in the generator's packed form (the bank stores its bases once and
K coefficients per anchor), replaced after every experience, as von Oswald et al. (2020) regularise
towards the hypernetwork of the previous task. Labels serve rehearsal through the model (`model.py`).

What is stored is what counts (`nbytes`), so it can be stored small: float anchors in float16, or in int8
with one float16 scale per anchor and kind (symmetric, round to nearest: an error of at most half a step,
max|v| / 254, per number; Jacob et al. 2018's affine quantisation without the zero point); the snapshot's
floats in float16. They are decoded to float32 when drawn. Labels are int16.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from strategies.hywu.generator import factor_bytes
from strategies.hywu.options import ANCHOR_DTYPES, SNAPSHOT_DTYPES, AnchorDtype, SnapshotDtype
from strategies.lowrank import Factors

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}


def encode(v: Tensor, dtype: str) -> tuple[Tensor, Tensor | None]:
    """A float tensor (N, ...) in its stored form: (values, per-row scale (N, 1) or None). Integer tensors
    (task ids) are kept as they are."""
    if not v.is_floating_point() or dtype == "float32":
        return v, None
    if dtype == "float16":
        return v.to(torch.float16), None
    flat = v.reshape(v.shape[0], -1).float()
    scale = (flat.abs().amax(1, keepdim=True) / 127).clamp_min(1e-12).to(torch.float16)  # (N, 1)
    q = (flat / scale.float()).round().clamp(-127, 127).to(torch.int8)
    return q.reshape(v.shape), scale


def decode(v: Tensor, scale: Tensor | None) -> Tensor:
    if scale is not None:
        return (v.reshape(v.shape[0], -1).float() * scale.float()).reshape(v.shape)
    return v.float() if v.is_floating_point() else v


@torch.no_grad()
def herding(features: Tensor, labels: Tensor, k: int) -> Tensor:
    """Indices of k instances chosen by herding per class (Welling 2009; Rebuffi et al. 2017, iCaRL): each
    class gets a share of k by its frequency, filled greedily so that the running mean of the chosen
    (normalised) features stays closest to the class mean."""
    f = torch.nn.functional.normalize(features.flatten(1).float(), dim=1).cpu()  # (N, D)
    labels = labels.cpu()
    classes, counts = labels.unique(return_counts=True)
    quota = (counts.double() * min(k, len(labels)) / len(labels)).floor().long()
    for i in torch.argsort(counts, descending=True)[:min(k, len(labels)) - int(quota.sum())]:
        quota[i] += 1  # the remainder to the largest classes
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        index = (labels == c).nonzero().squeeze(1)
        fc = f[index]
        mu, total = fc.mean(0), torch.zeros_like(fc[0])
        free = torch.ones(len(index), dtype=torch.bool)
        for step in range(min(q, len(index))):
            gap = ((mu - (total + fc) / (step + 1)) ** 2).sum(1).masked_fill(~free, float("inf"))  # (n_c,)
            best = int(gap.argmin())
            chosen.append(int(index[best]))
            free[best] = False
            total += fc[best]
    return torch.tensor(chosen, dtype=torch.long)


class FunctionalMemory:
    def __init__(self, anchor_dtype: AnchorDtype = "float32", snapshot_dtype: SnapshotDtype = "float32") -> None:
        if anchor_dtype not in ANCHOR_DTYPES or snapshot_dtype not in SNAPSHOT_DTYPES:
            raise ValueError(f"anchor_dtype must be one of {', '.join(ANCHOR_DTYPES)} (got {anchor_dtype!r}) and "
                             f"snapshot_dtype one of {', '.join(SNAPSHOT_DTYPES)} (got {snapshot_dtype!r})")
        self.anchor_dtype, self.snapshot_dtype = anchor_dtype, snapshot_dtype
        self.anchors: dict[str, Tensor] = {}  # kind -> (N, ...) frozen condition parts, stored form
        self.scales: dict[str, Tensor] = {}  # kind -> (N, 1) float16 scales of int8 anchors
        self.labels: Tensor | None = None  # (N,) int16 class labels
        self.packed: dict[str, Factors] | None = None  # site -> packed factors for all N anchors, stored form
        self._working: dict[str, Factors] | None = None  # the snapshot as float32 on the device in use

    def __len__(self) -> int:
        return next(iter(self.anchors.values())).shape[0] if self.anchors else 0

    def add(self, raw: dict[str, Tensor], labels: Tensor | None = None) -> None:
        if self.anchors and set(raw) != set(self.anchors):
            raise ValueError(f"anchor kinds changed from {sorted(self.anchors)} to {sorted(raw)}")
        if self.anchors and (labels is None) != (self.labels is None):
            raise ValueError("either every anchor has a label or none has")
        for kind, v in raw.items():
            stored, scale = encode(v.detach().cpu(), self.anchor_dtype)
            self.anchors[kind] = torch.cat([self.anchors[kind], stored]) if kind in self.anchors else stored
            if scale is not None:
                self.scales[kind] = torch.cat([self.scales[kind], scale]) if kind in self.scales else scale
        if labels is not None:
            labels = labels.detach().cpu().to(torch.int16)
            self.labels = labels if self.labels is None else torch.cat([self.labels, labels])

    def draw(self, k: int) -> Tensor:
        """Indices of up to k anchors, without replacement."""
        return torch.randperm(len(self))[:k]

    def raw(self, index: Tensor, device: torch.device | str) -> dict[str, Tensor]:
        """The anchors `index`, decoded (float32), on `device`."""
        index = index.cpu()
        return {k: decode(v[index], self.scales[k][index] if k in self.scales else None).to(device)
                for k, v in self.anchors.items()}

    def labels_of(self, index: Tensor, device: torch.device | str) -> Tensor:
        if self.labels is None:
            raise RuntimeError("these anchors were stored without labels")
        return self.labels[index.cpu()].long().to(device)

    def set_snapshot(self, packed: dict[str, Factors]) -> None:
        dtype = DTYPES[self.snapshot_dtype]
        self.packed = {s: tuple(t.detach().cpu().to(dtype) for t in f) for s, f in packed.items()}  # type: ignore[misc]
        self._working = None

    def packed_on(self, device: torch.device | str) -> dict[str, Factors]:
        """The snapshot as float32 on `device` (a working copy of the stored form, kept until the next one)."""
        if self.packed is None:
            raise RuntimeError("no snapshot taken yet")
        if self._working is None or any(t.device != torch.device(device) for f in self._working.values() for t in f):
            self._working = {s: tuple(t.to(device, torch.float32) for t in f)  # type: ignore[misc]
                             for s, f in self.packed.items()}
        return self._working

    def anchor_bytes(self) -> int:
        tensors = [*self.anchors.values(), *self.scales.values()] + ([self.labels] if self.labels is not None else [])
        return sum(v.numel() * v.element_size() for v in tensors)

    def snapshot_bytes(self) -> int:
        return factor_bytes(self.packed) if self.packed is not None else 0

    def nbytes(self) -> int:
        return self.anchor_bytes() + self.snapshot_bytes()

    def state_dict(self) -> dict[str, Any]:
        packed = None if self.packed is None else {s: list(f) for s, f in self.packed.items()}
        return {"anchors": dict(self.anchors), "scales": dict(self.scales), "labels": self.labels,
                "packed": packed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors = dict(state["anchors"])
        self.scales = dict(state.get("scales", {}))
        self.labels = state.get("labels")
        packed = state.get("packed")
        self.packed = None if packed is None else {s: tuple(f) for s, f in packed.items()}
        self._working = None
