"""HY-WU as a continual-learning strategy: a frozen base, a generator of per-instance low-rank updates,
and a functional memory of condition anchors that keeps the generator's old behaviour.

- The base is trained once and frozen: by the harness's shared warm start on experience 0
  (`warm_started=True`), or by the strategy itself on the first experience it trains, with the given
  optimizer, as naive fine-tuning would (a plain Avalanche script). Afterwards only the generator, the
  condition encoder's learnt parts and the modules named in `trainable` learn.
- Every instance runs its own operator, y = W x + scaling * B(c) (A(c) x), with c its condition
  (`condition.py`: by default the frozen base's own first hidden layer), the factors from the generator
  (`generator.py`) and the unmerged operator (`operator.py`), at every layer after the condition layer and
  at the output layer (`model.py`), so new classes get room without a trainable head. Nothing is optimised
  at test time.
- Functional memory (`memory.py`): after every experience, `anchors_per_experience` condition anchors from
  it are kept (the frozen part of the condition, never raw inputs; int8 by default) with their labels.
  While later experiences are learnt, `anchors_per_step` anchors are drawn per step and run in the same
  call as the minibatch: (a) through the rest of the adapted model, their cross-entropy weighted by
  `rehearsal` (latent replay, Pellegrini et al. 2020, where the model allows it, see `model.py`); (b)
  through the generator, beta * mean ||dW(c_a) - dW_snapshot(c_a)||_F^2 against a snapshot of the updates
  generated for them (von Oswald et al. 2020's output regulariser, on instance conditions; exact through
  small Gram matrices, `generator.delta_distance`).
- Optional anti-collapse term: mean squared cosine between different instances' updates.

Usable from a plain Avalanche script like Avalanche's own strategies (any model: HY-WU finds its layers,
logs them, trains the base on the first experience and freezes it)::

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    strategy = HYWUStrategy(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                            train_mb_size=32, train_epochs=5, device="cpu")
    for experience in benchmark.train_stream:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)

References: HY-WU, arXiv 2603.07236; von Oswald et al. 2020, "Continual learning with hypernetworks";
Pellegrini et al. 2020, "Latent Replay for Real-Time Continual Learning".
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
from strategies.hywu.generator import BankGenerator, GeneratorConfig, delta_gram, slice_factors
from strategies.hywu.memory import FunctionalMemory, herding
from strategies.hywu.model import HYWUModel
from strategies.hywu.options import HYWUOptions

__all__ = ["HYWUOptions", "HYWUStrategy", "build_hywu", "resolve_condition"]

log = logging.getLogger(__name__)
HERDING_POOL = 4000  # instances of an experience herding chooses its anchors from
# With rehearsal beta 3 did not help (validation, rank 1: split-fmnist 0.749 vs 0.759 at beta 0, rotated-fmnist
# 0.677 vs 0.683); without it beta 3 is the regulariser's chosen weight (split-fmnist 0.705 vs 0.663 at beta 1).
BETA_WITHOUT_REHEARSAL = 3.0
# Where the bank generates the head alone (the small CNN: condition at fc1, the head after it), its router can
# put every instance on one basis (one test seed of five collapsed); rehearsal 2 with the balance term removes
# that (validation, small CNN, split-fmnist, seeds 0-2: ACC 0.727, forgetting 0.192, against 0.685 and 0.275 at
# rehearsal 1, balance 0). With more generated sites (the MLP) the router does not collapse, and the same
# setting was mixed on the validation splits, so rehearsal 1 and balance 0 stay there (docs/hywu.md).
HEAD_ONLY_REHEARSAL, HEAD_ONLY_BALANCE = 2.0, 1.0


def resolve_condition(options: HYWUOptions, condition_dim: int) -> str:
    if options.condition != "auto":
        return options.condition
    return "features+token" if condition_dim > 0 else "features"


class HYWUStrategy(HarnessTemplate):
    """Avalanche SupervisedTemplate training a generator of per-instance low-rank updates.

    `warm_started`: True when the model's weights are already trained (the harness's shared warm start, a
    pretrained model): the base is frozen now. False (a plain Avalanche script): the first experience
    trained trains the base and head with `optimizer`, as naive fine-tuning would, and freezes them after.
    The generator is trained by Adam at `options.lr` (`options.optimizer="run"`: by `optimizer`'s class
    and hyperparameters, at `options.lr`).
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 options: HYWUOptions | None = None, input_shape: tuple[int, ...] | None = None,
                 condition_dim: int = 0, n_tasks: int = 64, warm_started: bool = False, **template_kwargs: Any):
        self.options = options = options or HYWUOptions()
        condition = resolve_condition(options, condition_dim)
        cfg = GeneratorConfig(arch=options.generator, rank=options.rank, hidden=options.hidden,
                              bank_size=options.bank_size, train_bank_A=options.train_bank_A)
        hywu = HYWUModel(model, sites=options.sites, head=options.head, rank=options.rank, alpha=options.alpha,
                         trainable=options.trainable, generator=cfg, condition=condition,
                         condition_layer=options.condition_layer, input_shape=input_shape,
                         condition_dim=condition_dim, n_tasks=n_tasks)
        self._given_optimizer = optimizer
        self.training_base = not warm_started  # the base learns (and the generator waits) until frozen
        if self.training_base:
            hywu.base.requires_grad_(True)
            hywu.base_frozen.fill_(False)
        template_kwargs.setdefault("criterion", nn.CrossEntropyLoss())
        first = self._base_optimizer(hywu) if self.training_base else self._generator_optimizer(hywu)
        super().__init__(model=hywu, optimizer=first, **template_kwargs)
        self.memory = FunctionalMemory(options.anchor_dtype, options.snapshot_dtype)
        self._anchor_index: Tensor | None = None
        self._anchor_logits: Tensor | None = None
        self.last_regulariser: Tensor | None = None  # the last step's regulariser value (detached)
        self.last_anchor_loss: Tensor | None = None  # the last step's rehearsal cross-entropy (detached)
        hywu.register_load_state_dict_post_hook(self._after_model_load)

    # -- what learns: the base first (unless warm-started), then the generator ---------------------
    def _base_optimizer(self, model: HYWUModel) -> torch.optim.Optimizer:
        params = list(model.base.parameters())
        given = self._given_optimizer
        if given is None:
            return torch.optim.Adam(params, lr=self.options.lr)
        return given

    def _generator_optimizer(self, model: HYWUModel) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        given = self._given_optimizer
        if self.options.optimizer == "run" and given is not None:
            return type(given)(params, **{**given.defaults, "lr": self.options.lr})
        return torch.optim.Adam(params, lr=self.options.lr)

    def freeze_base(self) -> None:
        """End of the base's training: freeze it (but `trainable`), and train the generator from now on."""
        model = self.model
        for name, p in model.base.named_parameters():
            p.requires_grad_(any(name.startswith(t + ".") for t in model.trainable))
        model.base_frozen.fill_(True)
        model.train(model.training)
        self.training_base = False
        self.optimizer = self._generator_optimizer(model)
        self.optimized_param_id = None  # Avalanche gathers the parameters into the new optimizer afresh
        log.info("HY-WU froze the base after training it on experience %s",
                 getattr(self.experience, "current_experience", "?"))

    def _after_model_load(self, module: nn.Module, keys: Any) -> None:
        if self.training_base and bool(self.model.base_frozen):  # a checkpoint written after the base phase
            self.freeze_base()

    @property
    def beta(self) -> float:
        """The regulariser's weight: `options.beta`, or when that is None, 0 where anchors are rehearsed
        through the model and BETA_WITHOUT_REHEARSAL where they cannot be (chosen on validation splits)."""
        if self.options.beta is not None:
            return self.options.beta
        rehearsed = self.rehearsal > 0 and self.model.rehearsable()
        return 0.0 if rehearsed else BETA_WITHOUT_REHEARSAL

    @property
    def head_only_bank(self) -> bool:
        """True when the bank generates the output layer's update and no other (HEAD_ONLY_REHEARSAL)."""
        return isinstance(self.model.generator, BankGenerator) and self.model.head_only

    @property
    def rehearsal(self) -> float:
        """The anchors' cross-entropy weight: `options.rehearsal`, or when that is None, HEAD_ONLY_REHEARSAL
        where the bank generates the head alone and 1 elsewhere (chosen on validation splits)."""
        if self.options.rehearsal is not None:
            return self.options.rehearsal
        return HEAD_ONLY_REHEARSAL if self.head_only_bank else 1.0

    @property
    def balance(self) -> float:
        """The bank's balance weight: `options.balance`, or when that is None, HEAD_ONLY_BALANCE where the bank
        generates the head alone and 0 elsewhere (chosen on validation splits)."""
        if self.options.balance is not None:
            return self.options.balance
        return HEAD_ONLY_BALANCE if self.head_only_bank else 0.0

    # -- the forward pass and the loss ------------------------------------------------------------
    def forward(self) -> Tensor:
        self._anchor_index, self._anchor_logits = None, None
        if self.training_base:  # the base learns on its own first: no generated update yet
            return self.model.base(self.mb_x)
        extra, rehearse = None, False
        opts = self.options
        if self.is_training and (self.beta > 0 or self.rehearsal > 0) and len(self.memory) > 0:
            self._anchor_index = self.memory.draw(opts.anchors_per_step)
            extra = self.memory.raw(self._anchor_index, self.device)
            rehearse = (self.rehearsal > 0 and self.memory.labels is not None
                        and self.model.rehearsable(self.mb_x))
        out = self.model(self.mb_x, token=self.mb_condition, task=self.mb_task_id, extra=extra, rehearse=rehearse)
        if rehearse:  # (B + M, C): the batch's logits, then the anchors'
            n = self.mb_x.shape[0]
            out, self._anchor_logits = out[:n], out[n:]
        return out

    def criterion(self) -> Tensor:
        loss = self._criterion(self.mb_output, self.mb_y)
        if not self.is_training or self.training_base:
            return loss
        factors, n = self.model.last_factors, self.mb_x.shape[0]
        if self._anchor_index is not None and self.beta > 0:
            reg = self.regulariser(slice_factors(factors, slice(n, None)), self._anchor_index)
            self.last_regulariser = reg.detach()
            loss = loss + self.beta * reg
        if self._anchor_logits is not None:
            labels = self.memory.labels_of(self._anchor_index, self.device)
            anchor_loss = self._criterion(self._anchor_logits.float(), labels)
            self.last_anchor_loss = anchor_loss.detach()
            loss = loss + self.rehearsal * anchor_loss
        if self.options.anti_collapse > 0:
            loss = loss + self.options.anti_collapse * self.collapse_penalty(slice_factors(factors, slice(0, n)))
        if self.balance > 0:
            loss = loss + self.balance * self.model.generator.imbalance(factors)
        return loss

    def regulariser(self, now: dict, index: Tensor) -> Tensor:
        """mean over the anchors of sum over sites ||dW_now - dW_snapshot||_F^2 (in float32)."""
        scaling = {name: site.scaling for name, site in self.model.sites.items()}
        packed = self.memory.packed_on(self.device)
        now = {s: tuple(t.float() for t in f) for s, f in now.items()}
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
        if self.training_base and self.train_epochs > 0:
            self.freeze_base()
        if not self.training_base:
            self.store_anchors(self.experience)
            self.snapshot()
        super()._after_training_exp(**kwargs)

    @torch.no_grad()
    def store_anchors(self, experience: Any) -> None:
        """Keep `anchors_per_experience` condition anchors of the experience's training data, and their labels:
        a random sample, or (`anchor_selection="herding"`) chosen by herding from a larger random pool."""
        k = self.options.anchors_per_experience
        if k == 0:
            return
        herd = self.options.anchor_selection == "herding"
        x, y, token, t = _sample(experience.dataset, HERDING_POOL if herd else k)
        parts = []
        for chunk in torch.arange(x.shape[0]).split(self.eval_mb_size):
            parts.append(self.model.condition_raw(x[chunk].to(self.device),
                                                  None if token is None else token[chunk].to(self.device),
                                                  t[chunk].to(self.device)))
        raw = {key: torch.cat([r[key] for r in parts]) for key in parts[0]}
        self.model.rehearsable(x.to(self.device))  # decided here if no step has run yet (experience 0)
        if herd and "features" in raw:
            keep = herding(raw["features"], y, k)
            raw, y = {key: v[keep.to(v.device)] for key, v in raw.items()}, y[keep]
        self.memory.add(raw, labels=y)

    @torch.no_grad()
    def snapshot(self) -> None:
        """Store the generator's current updates for every anchor (the regulariser's targets)."""
        if len(self.memory) == 0 or self.beta == 0:
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


def _sample(dataset: Any, k: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """k random instances of a dataset: inputs, labels, condition tokens (or None), task labels."""
    tensors = dataset_tensors(dataset)
    n = len(dataset) if tensors is None else tensors[0].shape[0]
    index = torch.randperm(n)[:k]
    if tensors is not None:  # the fast path: [x, y, (c,) t]
        token = tensors[2][index] if len(tensors) == 4 else None
        return tensors[0][index], tensors[1][index], token, tensors[-1][index]
    items = [dataset[int(i)] for i in index]  # any Avalanche dataset: (x, y, [c,] t) per item
    token = torch.stack([torch.as_tensor(it[2]) for it in items]) if len(items[0]) == 4 else None
    return (torch.stack([torch.as_tensor(it[0]) for it in items]), torch.tensor([int(it[1]) for it in items]),
            token, torch.tensor([int(it[-1]) for it in items]))


def build_hywu(model: nn.Module, setup: TrainingSetup, options: HYWUOptions) -> HYWUStrategy:
    """The run's optimizer trains the base when there was no shared warm start (`--no-warm-start`)."""
    info = setup.info
    try:
        return HYWUStrategy(model=model, optimizer=setup.optimizer(model.parameters()), options=options,
                            input_shape=info.input_shape, condition_dim=info.condition_dim,
                            n_tasks=max(info.n_experiences, 1), warm_started=setup.spec.warm_start,
                            **setup.template_kwargs())
    except ValueError as err:  # a site, layer or condition this backbone or scenario does not have
        raise UserError(f"strategy 'hywu': {err}") from None

