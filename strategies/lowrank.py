"""The per-instance low-rank operator: y = W x + scaling * B_i (A_i x), never merged into W.

Every instance i of a batch carries its own factors, lora_A (B, R, D_in) and lora_B (B, D_out, R), as
in HY-WU's `batched_lora_forward_bmm` (Tencent-Hunyuan/HY-WU, `wu/`); a shared factor (R, D_in) or
(D_out, R) serves the whole batch, as a plain LoRA adapter does. Either factor may be shared or
per-instance independently. An optional third factor, a per-instance gate `lora_scale` (B, R), multiplies
the rank components: y = W x + scaling * B diag(s_i) A x. This is how a learned bank of low-rank bases
mixed by per-instance coefficients runs without materialising a (B, D_out, R) tensor. The gate may also
be (B, G) with G dividing R: each entry then scales R / G consecutive components (the bank's inference
form, one coefficient per basis of rank R / G, never repeated per component).

The wrappers hold `base_layer` like peft's LoRA layers (`tuners/lora/layer.py`), with `scaling =
alpha / rank`; the factors are not parameters of the wrapper but are set for one forward pass through
`use_factors`, which always clears them. With no factors set the wrapper returns the base output exactly.

For Conv2d, A is a convolution with the base kernel, stride, padding and dilation producing R channels
(factor width C_in * kh * kw) and B a 1x1 map R -> C_out, so the update equals the merged per-instance
convolution with weight W + scaling * (B_i A_i).view(C_out, C_in, kh, kw).
"""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Factors = Union[tuple[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


class _LowRankLayer(nn.Module):
    """What the Linear and Conv2d wrappers share: the base layer, the scaling, the transient factors."""

    base_layer: nn.Module

    def __init__(self, base_layer: nn.Module, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1 (got {rank})")
        self.base_layer = base_layer
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.lora_A: Tensor | None = None
        self.lora_B: Tensor | None = None
        self.lora_scale: Tensor | None = None

    @property
    def in_features(self) -> int:  # d_in of the factor A: C_in * kh * kw for a convolution
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        raise NotImplementedError

    @property
    def has_factors(self) -> bool:
        return self.lora_A is not None

    def set_factors(self, lora_A: Tensor, lora_B: Tensor, lora_scale: Tensor | None = None) -> None:
        """Check shapes and keep the factors for the next forward passes (until `clear_factors`)."""
        d_in, d_out = self.in_features, self.out_features
        if lora_A.shape[-1] != d_in or lora_A.dim() not in (2, 3):
            raise ValueError(f"lora_A must be (R, {d_in}) or (B, R, {d_in}); got {tuple(lora_A.shape)}")
        if lora_B.shape[-2] != d_out or lora_B.dim() not in (2, 3):
            raise ValueError(f"lora_B must be ({d_out}, R) or (B, {d_out}, R); got {tuple(lora_B.shape)}")
        if lora_A.shape[-2] != lora_B.shape[-1]:
            raise ValueError(f"lora_A rank {lora_A.shape[-2]} differs from lora_B rank {lora_B.shape[-1]}")
        if lora_scale is not None and (lora_scale.dim() != 2 or lora_scale.shape[-1] < 1
                                       or lora_A.shape[-2] % lora_scale.shape[-1]):
            raise ValueError(f"lora_scale must be (B, {lora_A.shape[-2]}) or (B, G) with G dividing "
                             f"{lora_A.shape[-2]}; got {tuple(lora_scale.shape)}")
        batches = {t.shape[0] for t in (lora_A, lora_B) if t.dim() == 3}
        batches |= {lora_scale.shape[0]} if lora_scale is not None else set()
        if len(batches) > 1:
            raise ValueError(f"per-instance factors disagree on the batch size: {sorted(batches)}")
        self._put(lora_A, lora_B, lora_scale)

    def clear_factors(self) -> None:
        self._put(None, None, None)

    def _put(self, lora_A: Tensor | None, lora_B: Tensor | None, lora_scale: Tensor | None) -> None:
        """Plain attributes, never registered: a generator's parameter set here (the bank's bases) must
        not become a parameter of the wrapper, and nn.Module's attribute machinery costs per call."""
        if self._parameters:  # set from outside through nn.Module.__setattr__ (e.g. a probe): unregister
            for name in ("lora_A", "lora_B", "lora_scale"):
                self._parameters.pop(name, None)
        d = self.__dict__
        d["lora_A"], d["lora_B"], d["lora_scale"] = lora_A, lora_B, lora_scale

    def _check_batch(self, n: int) -> None:
        per_instance = [t for t in (self.lora_A, self.lora_B) if t is not None and t.dim() == 3]
        per_instance += [self.lora_scale] if self.lora_scale is not None else []
        for t in per_instance:
            if t.shape[0] != n:
                raise ValueError(f"per-instance factors are for a batch of {t.shape[0]}, the input has {n}")

    def delta_weight(self, lora_A: Tensor, lora_B: Tensor) -> Tensor:
        """scaling * B A shaped like the base weight; per-instance factors give (B, *weight.shape)."""
        delta = self.scaling * (lora_B @ lora_A)  # ([B,] D_out, D_in)
        return delta.reshape(*delta.shape[:-2], *self.base_layer.weight.shape)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, scaling={self.scaling:g}"


def _apply_gate(h: Tensor, gate: Tensor) -> Tensor:
    """h (B, N, R) times the gate (B, G): each of the G entries scales R / G consecutive rank components
    (G = R: one per component; G = K for a bank of K rank-r bases: one per basis, never repeated r times)."""
    n, m, r = h.shape
    g = gate.shape[-1]
    if g == r:
        return h * gate.unsqueeze(1)
    return (h.view(n, m, g, r // g) * gate[:, None, :, None]).view(n, m, r)


def _apply_B(lora_B: Tensor, h: Tensor) -> Tensor:
    """h (B, N, R) -> (B, N, D_out) with a shared (D_out, R) or per-instance (B, D_out, R) B."""
    if lora_B.dim() == 2:
        return F.linear(h, lora_B)
    return torch.bmm(h, lora_B.transpose(1, 2))


class LowRankLinear(_LowRankLayer):
    """y = base_layer(x) + scaling * B (A x), per instance; x is (B, D_in) or (B, ..., D_in)."""

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float):
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LowRankLinear wraps an nn.Linear, got {type(base_layer).__name__}")
        super().__init__(base_layer, rank, alpha)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)
        if self.lora_A is None:
            return y
        self._check_batch(x.shape[0])
        A, B = self.lora_A, self.lora_B
        if A.dtype != x.dtype:
            A = A.to(x.dtype)
        if B.dtype != x.dtype:
            B = B.to(x.dtype)
        if x.dim() == 2 and A.dim() == 2 and B.dim() == 2:  # one vector per instance, shared bases (the bank)
            h = F.linear(x, A)  # (B, R)
            gate = self.lora_scale
            if gate is not None:
                n, r, g = h.shape[0], h.shape[1], gate.shape[-1]
                if torch.is_grad_enabled():
                    h = h * gate if g == r else (h.view(n, g, r // g) * gate.unsqueeze(-1)).view(n, r)
                else:  # h is ours alone: scale it in place
                    h.mul_(gate) if g == r else h.view(n, g, r // g).mul_(gate.unsqueeze(-1))
            return torch.addmm(y, h, B.t(), alpha=self.scaling)  # y + scaling * h B^T, one call
        h = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, N, D_in)
        h = F.linear(h, A) if A.dim() == 2 else torch.bmm(h, A.transpose(1, 2))  # (B, N, R)
        if self.lora_scale is not None:
            h = _apply_gate(h, self.lora_scale)  # (B, N, R)
        delta = _apply_B(B, h)  # (B, N, D_out)
        return torch.add(y, delta.reshape(y.shape), alpha=self.scaling)


class LowRankConv2d(_LowRankLayer):
    """A per-instance low-rank update of a Conv2d: A is a conv to R channels, B a 1x1 map to C_out."""

    def __init__(self, base_layer: nn.Conv2d, rank: int, alpha: float):
        if not isinstance(base_layer, nn.Conv2d):
            raise TypeError(f"LowRankConv2d wraps an nn.Conv2d, got {type(base_layer).__name__}")
        if base_layer.groups != 1 or base_layer.padding_mode != "zeros":
            raise ValueError("LowRankConv2d supports groups=1 and padding_mode='zeros' convolutions only "
                             f"(got groups={base_layer.groups}, padding_mode='{base_layer.padding_mode}')")
        super().__init__(base_layer, rank, alpha)

    @property
    def in_features(self) -> int:
        w = self.base_layer.weight  # (C_out, C_in, kh, kw)
        return w.shape[1] * w.shape[2] * w.shape[3]

    @property
    def out_features(self) -> int:
        return self.base_layer.out_channels

    def _conv(self, x: Tensor, weight: Tensor, groups: int = 1) -> Tensor:
        conv = self.base_layer
        return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, groups)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)  # (B, C_out, H', W')
        if self.lora_A is None:
            return y
        self._check_batch(x.shape[0])
        n, c_in = x.shape[0], x.shape[1]
        kh, kw = self.base_layer.kernel_size
        A = self.lora_A.to(x.dtype)
        r = A.shape[-2]
        if A.dim() == 2:
            h = self._conv(x, A.reshape(r, c_in, kh, kw))  # (B, R, H', W')
        else:  # one group per instance: (1, B C_in, H, W) * (B R, C_in, kh, kw) -> (1, B R, H', W')
            h = self._conv(x.reshape(1, n * c_in, *x.shape[2:]), A.reshape(n * r, c_in, kh, kw), groups=n)
            h = h.reshape(n, r, *h.shape[2:])  # (B, R, H', W')
        if self.lora_scale is not None:
            g = self.lora_scale.shape[-1]  # one entry per rank component, or per group of r / g of them
            h = (h.reshape(n, g, r // g, *h.shape[2:]) * self.lora_scale[:, :, None, None, None]).reshape(h.shape)
        Bf = self.lora_B.to(x.dtype)
        if Bf.dim() == 2:
            delta = torch.einsum("or,brhw->bohw", Bf, h)  # (B, C_out, H', W')
        else:
            delta = torch.einsum("bor,brhw->bohw", Bf, h)
        return torch.add(y, delta, alpha=self.scaling)


LowRankSite = Union[LowRankLinear, LowRankConv2d]


def inject(model: nn.Module, patterns: Sequence[str], rank: int, alpha: float) -> dict[str, LowRankSite]:
    """Replace every Linear/Conv2d whose qualified name matches a pattern (fnmatch) by its wrapper.

    Returns {name: wrapper} in module order. Raises ValueError, listing the available layer names, when
    a pattern matches nothing, and when a matched layer is already wrapped.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    available = _adaptable(model)
    wrapped = {name for name, m in model.named_modules() if isinstance(m, _LowRankLayer)}
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in available)]
    if unmatched:
        again = [p for p in unmatched if any(fnmatch.fnmatchcase(n, p) for n in wrapped)]
        if again:
            raise ValueError(f"layers matching {again} are already wrapped by a low-rank operator")
        raise ValueError(f"no Linear/Conv2d layer matches {unmatched}; available: {', '.join(available)}")
    sites: dict[str, LowRankSite] = {}
    for name in available:
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        layer = model.get_submodule(name)
        cls = LowRankLinear if isinstance(layer, nn.Linear) else LowRankConv2d
        sites[name] = cls(layer, rank, alpha)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, sites[name])
    return sites


def _adaptable(model: nn.Module) -> list[str]:
    """Qualified names of the Linear/Conv2d layers not already inside a low-rank wrapper."""
    inside = [name for name, m in model.named_modules() if isinstance(m, _LowRankLayer)]
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and name
            and not any(name == w or name.startswith(w + ".") for w in inside)]


@contextmanager
def use_factors(sites: Mapping[str, _LowRankLayer], factors: Mapping[str, Factors]) -> Iterator[None]:
    """Set each site's factors for the block; every site in `sites` is cleared afterwards, always."""
    unknown = sorted(set(factors) - set(sites))
    if unknown:
        raise ValueError(f"factors for unknown sites {unknown}; sites: {', '.join(sites)}")
    try:
        for name, pair in factors.items():
            sites[name].set_factors(*pair)
        yield
    finally:
        for site in sites.values():
            site.clear_factors()


def site_shapes(sites: Mapping[str, _LowRankLayer]) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each site's factors; d_in = C_in * kh * kw for a convolution."""
    return {name: (site.in_features, site.out_features) for name, site in sites.items()}
