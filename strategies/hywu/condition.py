"""Condition encoders: what the generator sees of each instance.

A condition is named by kinds joined with '+', e.g. `features`, `features+token`, `task`:

- `features`: the frozen base's own hidden features of the instance at a chosen layer (the paper
  conditions on the base model's hidden states). `layer="penultimate"` reads the output layer's input (a
  flat vector on any classifier); a module name reads that module's output (the base output when the module
  is an adapted site; a feature map is averaged to a 2 x 2 grid). Computed once per batch, with no gradient.
- `input`: a fixed random projection of the raw input (seeded; a sketch of the raw data, and counted
  as such in the memory report).
- `token`: the scenario's per-instance condition token (personalization streams).
- `task`: a learned embedding of the task label: HY-WU becomes a task-conditioned hypernetwork.

Every encoder splits into `raw(...)`, the frozen, storable part (the anchors of the functional memory
keep exactly this: feature vectors, projections, tokens or task ids, never raw inputs), and `embed(raw)`,
the learnable part (the task embedding), so the regulariser also covers what is learnt in the encoder.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from strategies.hywu.options import KINDS, parse_condition
from strategies.lowrank import _LowRankLayer

__all__ = ["KINDS", "parse_condition"]  # re-exported: declared with the options

EMBED_EPS = 1e-5  # of the per-instance layer norm of feature-like parts (F.layer_norm's default)
POOL = (2, 2)  # a convolutional feature map becomes C x 2 x 2 numbers
# What a stored anchor of each kind is, for the memory report.
ANCHOR_KIND = {"features": "embeddings", "input": "raw-derived", "token": "condition tokens", "task": "task labels"}


class _Stop(Exception):
    """Raised by the capture hook to skip the rest of a features-only forward pass."""


class FeatureReader:
    """Reads the frozen base's features at `layer`: a module's output (the base output when the module is an
    adapted site), or with 'penultimate' the input of the output layer `head` (what the harness's backbones'
    `features(x)` return, and on any classifier the flat vector its last Linear reads)."""

    def __init__(self, model: nn.Module, layer: str, head: str | None = None):
        self.model, self.layer, self.head = model, layer, head
        if layer == "penultimate":
            module = model.get_submodule(head) if head else None
            module = module.base_layer if isinstance(module, _LowRankLayer) else module
            if not isinstance(module, nn.Linear):
                raise ValueError("condition layer 'penultimate' reads the input of the model's output Linear, and "
                                 "this model has none; name a layer instead")
            self.dim = module.in_features
            return
        names = [n for n, _ in model.named_modules() if n]
        if layer not in names:
            raise ValueError(f"condition layer '{layer}' is not a module of the model; use 'penultimate' or "
                             f"one of: {', '.join(n for n in names if '.base_layer' not in n)}")
        module = model.get_submodule(layer)
        module = module.base_layer if isinstance(module, _LowRankLayer) else module
        self.dim = _out_dim(module) * (POOL[0] * POOL[1] if isinstance(module, nn.Conv2d) else 1)

    @property
    def reads_input(self) -> bool:
        """True when the feature is a module's input (the output layer's, 'penultimate'), not its output."""
        return self.layer == "penultimate"

    @property
    def module(self) -> nn.Module:
        """The module whose output is the feature (the base layer inside an adapted site), or for
        'penultimate' the output layer whose input it is (the site itself when adapted: its input comes
        before its update)."""
        if self.reads_input:
            return self.model.get_submodule(self.head)
        module = self.model.get_submodule(self.layer)
        return module.base_layer if isinstance(module, _LowRankLayer) else module

    def attach(self, fn: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Call `fn(feature)` whenever a forward pass computes the feature (before pooling); a tensor `fn`
        returns replaces the feature for the rest of that pass."""
        if self.reads_input:
            def pre_hook(module: nn.Module, args: tuple) -> tuple | None:
                out = fn(args[0])
                return None if out is None else (out, *args[1:])
            return self.module.register_forward_pre_hook(pre_hook)
        return self.module.register_forward_hook(lambda module, inputs, out: fn(out))

    @staticmethod
    def pool(out: Tensor) -> Tensor:
        """(B, dim): a feature map is averaged to a 2 x 2 grid, keeping coarse layout."""
        out = out.detach()
        return F.adaptive_avg_pool2d(out, POOL).flatten(1) if out.dim() == 4 else out.flatten(1)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """Features of the unadapted base: call only while no factors are set."""
        captured: list[Tensor] = []

        def capture(feature: Tensor) -> None:
            captured.append(self.pool(feature))
            raise _Stop

        handle = self.attach(capture)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"condition layer '{self.layer}' was not called in the model's forward pass")
        return captured[0]


def _out_dim(module: nn.Module) -> int:
    for attr in ("out_features", "out_channels", "num_features", "embedding_dim"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    raise ValueError(f"cannot tell the width of condition layer {type(module).__name__}; choose a Linear, "
                     "Conv2d or BatchNorm layer, or 'penultimate'")


class ConditionEncoder(nn.Module):
    """Composes condition kinds: `raw(x, token, task)` (frozen, storable) and `embed(raw)` (learnable)."""

    def __init__(self, spec: str, model: nn.Module, *, layer: str = "penultimate",
                 input_shape: tuple[int, ...] | None = None, condition_dim: int = 0, n_tasks: int = 64,
                 input_dim: int = 256, task_dim: int = 32, seed: int = 0, head: str | None = None):
        super().__init__()
        self.kinds = parse_condition(spec)
        self.spec = "+".join(self.kinds)
        self.reader = FeatureReader(model, layer, head) if "features" in self.kinds else None
        widths = {}
        if self.reader is not None:
            widths["features"] = self.reader.dim
        if "input" in self.kinds:
            if input_shape is None:
                raise ValueError("condition 'input' needs the input shape (pass input_shape=(C, H, W))")
            d = math.prod(input_shape)
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("projection", torch.randn(input_dim, d, generator=g) / math.sqrt(d))
            widths["input"] = input_dim
        if "token" in self.kinds:
            if condition_dim <= 0:
                raise ValueError("condition 'token' needs a scenario whose instances carry condition tokens "
                                 "(condition_dim > 0)")
            widths["token"] = condition_dim
        if "task" in self.kinds:
            self.task_embedding = nn.Embedding(n_tasks, task_dim)
            widths["task"] = task_dim
        self.widths = widths
        self.dim = sum(widths.values())

    @property
    def needs_features(self) -> bool:
        return self.reader is not None

    @torch.no_grad()
    def raw(self, x: Tensor, token: Tensor | None = None, task: Tensor | None = None,
            features: Tensor | None = None) -> dict[str, Tensor]:
        """The frozen part of the condition per instance; `features` if already read from the base."""
        out: dict[str, Tensor] = {}
        if self.reader is not None:
            out["features"] = features if features is not None else self.reader(x)
        if "input" in self.kinds:
            out["input"] = x.flatten(1).float() @ self.projection.T  # (B, input_dim)
        if "token" in self.kinds:
            if token is None:
                raise ValueError("condition 'token' but the minibatch carries no condition tokens")
            out["token"] = token.float().flatten(1)
        if "task" in self.kinds:
            if task is None:
                raise ValueError("condition 'task' but no task labels were given")
            if int(task.max()) >= self.task_embedding.num_embeddings:
                raise ValueError(f"task label {int(task.max())} >= n_tasks={self.task_embedding.num_embeddings}")
            out["task"] = task.long()
        return out

    def embed(self, raw: Mapping[str, Tensor]) -> Tensor:
        """(B, dim): the parts side by side, feature-like parts normalised per instance."""
        parts = []
        for kind in self.kinds:
            v = raw[kind]
            if kind in ("features", "input"):
                v = F.layer_norm(v, v.shape[-1:], eps=EMBED_EPS)
            elif kind == "task":
                v = self.task_embedding(v)
            parts.append(v)
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def normalised_part(self, raw: Mapping[str, Tensor]) -> Tensor | None:
        """When the embedding is nothing but the layer norm of one feature-like part, that part (before
        its norm, which `embed` applies with eps EMBED_EPS), so that a consumer can fold the norm into
        its own; else None."""
        if len(self.kinds) == 1 and self.kinds[0] in ("features", "input"):
            return raw[self.kinds[0]]
        return None

    def anchor_kind(self) -> str:
        return "+".join(ANCHOR_KIND[k] for k in self.kinds)
