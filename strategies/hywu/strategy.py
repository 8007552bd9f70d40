"""HY-WU as a continual-learning strategy: a frozen base, a generator of per-instance low-rank updates,
and a functional memory that keeps the generator's old behaviour.

- The base (warm-started on experience 0 by the runner, or trained by the user) is frozen when the
  strategy is built; only the generator, the condition encoder's learnt parts and the modules named in
  `trainable` learn afterwards. None by default, the head included: on held-out train data a frozen
  head did far better (split-fmnist 0.64 vs 0.17 with a trainable head), since a trainable head drifts
  towards the newest classes while the generator can only adapt the layers below it.
- Every instance runs its own operator, y = W x + scaling * B(c) (A(c) x), with c its condition
  (`condition.py`), the factors from the generator (`generator.py`) and the unmerged operator
  (`operator.py`). Nothing is optimised at test time.
- Functional memory (von Oswald et al. 2020's output regulariser, on instance conditions): after every
  experience, `anchors_per_experience` condition anchors from it are kept (the frozen part of the
  condition, never raw inputs), and the updates the generator produces for all anchors are snapshotted.
  While learning later experiences the loss adds beta * mean_anchors ||dW(c_a) - dW_snapshot(c_a)||_F^2,
  exact through small Gram matrices (`generator.delta_distance`), on `anchors_per_step` anchors drawn per
  step and run through the generator in one call with the minibatch.
- Optional anti-collapse term: mean squared cosine between different instances' generated updates.

Usable from a plain Avalanche script like Avalanche's own strategies::

    strategy = HYWUStrategy(model=MLP((1, 28, 28), 10), optimizer=torch.optim.Adam(params, lr=1e-3),
                            train_mb_size=64, train_epochs=1, device="cpu")
    for exp in benchmark.train_stream:
        strategy.train(exp)
        strategy.eval(benchmark.test_stream)

The optimizer keeps its class and hyperparameters but is pointed at the strategy's trainable parameters.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from hywu_bench.data import dataset_tensors
from hywu_bench.errors import UserError
from hywu_bench.memory import MemoryBytes
from hywu_bench.training import HarnessTemplate, TrainingSetup, module_bytes
from strategies.hywu.generator import GeneratorConfig, delta_gram, slice_factors
from strategies.hywu.memory import FunctionalMemory
from strategies.hywu.model import HYWUModel
from strategies.hywu.options import HYWUOptions

__all__ = ["HYWUOptions", "HYWUStrategy", "build_hywu", "resolve_condition"]

log = logging.getLogger(__name__)


def resolve_condition(options: HYWUOptions, condition_dim: int) -> str:
    if options.condition != "auto":
        return options.condition
    return "features+token" if condition_dim > 0 else "features"


class HYWUStrategy(HarnessTemplate):
    """Avalanche SupervisedTemplate training a generator of per-instance low-rank updates."""

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 options: HYWUOptions | None = None, input_shape: tuple[int, ...] | None = None,
                 condition_dim: int = 0, n_tasks: int = 64, **template_kwargs: Any):
        self.options = options = options or HYWUOptions()
        condition = resolve_condition(options, condition_dim)
        cfg = GeneratorConfig(arch=options.generator, rank=options.rank, hidden=options.hidden,
                              bank_size=options.bank_size, train_bank_A=options.train_bank_A)
        hywu = HYWUModel(model, sites=options.sites, rank=options.rank, alpha=options.alpha,
                         trainable=options.trainable, generator=cfg, condition=condition,
                         condition_layer=options.condition_layer, input_shape=input_shape,
                         condition_dim=condition_dim, n_tasks=n_tasks)
        params = [p for p in hywu.parameters() if p.requires_grad]
        if optimizer is None:
            optimizer = torch.optim.Adam(params, lr=options.lr)
        else:  # keep the user's optimizer class and hyperparameters, on what actually learns
            optimizer.param_groups.clear()
            optimizer.state.clear()
            optimizer.add_param_group({"params": params})
        template_kwargs.setdefault("criterion", nn.CrossEntropyLoss())
        super().__init__(model=hywu, optimizer=optimizer, **template_kwargs)
        self.memory = FunctionalMemory()
        self._anchor_index: Tensor | None = None
        self.last_regulariser: Tensor | None = None  # the last step's regulariser value (detached)

    # -- the forward pass and the loss ------------------------------------------------------------
    def forward(self) -> Tensor:
        extra = None
        self._anchor_index = None
        if self.is_training and self.options.beta > 0 and len(self.memory) > 0:
            self._anchor_index = self.memory.draw(self.options.anchors_per_step)
            extra = self.memory.raw(self._anchor_index, self.device)
        return self.model(self.mb_x, token=self.mb_condition, task=self.mb_task_id, extra=extra)

    def criterion(self) -> Tensor:
        loss = self._criterion(self.mb_output, self.mb_y)
        if not self.is_training:
            return loss
        factors, n = self.model.last_factors, self.mb_x.shape[0]
        if self._anchor_index is not None:
            reg = self.regulariser(slice_factors(factors, slice(n, None)), self._anchor_index)
            self.last_regulariser = reg.detach()
            loss = loss + self.options.beta * reg
        if self.options.anti_collapse > 0:
            loss = loss + self.options.anti_collapse * self.collapse_penalty(slice_factors(factors, slice(0, n)))
        return loss

    def regulariser(self, now: dict, index: Tensor) -> Tensor:
        """mean over the anchors of sum over sites ||dW_now - dW_snapshot||_F^2."""
        scaling = {name: site.scaling for name, site in self.model.sites.items()}
        packed = self.memory.packed_on(self.device)
        return self.model.generator.distance(now, packed, index.to(self.device), scaling).mean()

    def collapse_penalty(self, factors: dict, max_instances: int = 32) -> Tensor:
        """Mean squared cosine between different instances' updates (a few instances per batch)."""
        sub = slice_factors(factors, slice(0, max_instances))
        penalty = 0.0
        for name in self.model.sites:
            G = delta_gram(sub[name])  # (n, n)
            norm = G.diagonal().clamp_min(1e-12).sqrt()
            cos2 = (G / (norm[:, None] * norm[None, :])) ** 2
            off = ~torch.eye(G.shape[0], dtype=torch.bool, device=G.device)
            penalty = penalty + cos2[off].mean()
        return penalty / len(self.model.sites)

    # -- functional memory ------------------------------------------------------------------------
    def _after_training_exp(self, **kwargs: Any) -> None:
        self.store_anchors(self.experience)
        self.snapshot()
        super()._after_training_exp(**kwargs)

    @torch.no_grad()
    def store_anchors(self, experience: Any) -> None:
        """Keep `anchors_per_experience` condition anchors of the experience's training data."""
        k = self.options.anchors_per_experience
        if k == 0:
            return
        x, token, t = _sample(experience.dataset, k)
        index = torch.arange(x.shape[0])
        raw = []
        for chunk in index.split(self.eval_mb_size):
            raw.append(self.model.condition_raw(x[chunk].to(self.device),
                                                None if token is None else token[chunk].to(self.device),
                                                t[chunk].to(self.device)))
        self.memory.add({key: torch.cat([r[key] for r in raw]) for key in raw[0]})

    @torch.no_grad()
    def snapshot(self) -> None:
        """Store the generator's current updates for every anchor (the regulariser's targets)."""
        if len(self.memory) == 0:
            return
        raw = self.memory.raw(torch.arange(len(self.memory)), self.device)
        was_training = self.model.training
        self.model.eval()
        factors = self.model.generate(raw)
        self.model.train(was_training)
        self.memory.set_snapshot(self.model.generator.pack(factors))

    def memory_bytes(self) -> MemoryBytes:
        """Anchors: derived; the snapshot of generated updates: model state; the generator and the condition
        encoder's own parameters (task embeddings, projection): extra parameters of the deployed model."""
        extra = module_bytes(self.model.generator) + module_bytes(self.model.condition)
        own = MemoryBytes(derived=self.memory.anchor_bytes(), model_state=self.memory.snapshot_bytes(),
                          extra_parameters=extra)
        return super().memory_bytes() + own

    def memory_report(self) -> dict[str, Any]:
        return {"anchors": len(self.memory), "anchor_kind": self.model.condition.anchor_kind(),
                "anchor_bytes": self.memory.anchor_bytes(), "snapshot_bytes": self.memory.snapshot_bytes()}

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The model (base, generator, condition encoder) and the functional memory (anchors, snapshot).
        The optimizer is Avalanche's to manage (it re-gathers parameters at every experience)."""
        return {"model": self.model.state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.memory.load_state_dict(state["memory"])

    def strategy_state(self) -> dict[str, Any]:
        """For the runner's per-experience checkpoint: plugins (CheckpointMixin) plus the functional memory."""
        return {**super().strategy_state(), "memory": self.memory.state_dict()}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        super().load_strategy_state(state)
        self.memory.load_state_dict(state["memory"])


def _sample(dataset: Any, k: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """k random instances of a dataset: inputs, condition tokens (or None), task labels."""
    tensors = dataset_tensors(dataset)
    n = len(dataset) if tensors is None else tensors[0].shape[0]
    index = torch.randperm(n)[:k]
    if tensors is not None:  # the fast path: [x, y, (c,) t]
        token = tensors[2][index] if len(tensors) == 4 else None
        return tensors[0][index], token, tensors[-1][index]
    items = [dataset[int(i)] for i in index]  # any Avalanche dataset: (x, y, [c,] t) per item
    token = torch.stack([torch.as_tensor(it[2]) for it in items]) if len(items[0]) == 4 else None
    return (torch.stack([torch.as_tensor(it[0]) for it in items]), token,
            torch.tensor([int(it[-1]) for it in items]))


def build_hywu(model: nn.Module, setup: TrainingSetup, options: HYWUOptions) -> HYWUStrategy:
    info = setup.info
    try:
        strategy = HYWUStrategy(model=model, optimizer=None, options=options, input_shape=info.input_shape,
                                condition_dim=info.condition_dim, n_tasks=max(info.n_experiences, 1),
                                **setup.template_kwargs())
    except ValueError as err:  # a site, layer or condition this backbone or scenario does not have
        raise UserError(f"strategy 'hywu': {err}") from None
    if options.optimizer == "run":
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        strategy.optimizer = setup.optimizer(params, options.lr)
    return strategy

