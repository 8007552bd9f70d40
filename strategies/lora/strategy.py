"""The LoRA family's models and templates (declared, with their options, in `strategies/lora/__init__.py`)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from hywu_bench.data import dataset_tensors
from hywu_bench.memory import MemoryBytes
from hywu_bench.training import HarnessTemplate, TrainingSetup, tensor_bytes
from strategies.lora import LoRAOptions, OLoRAOptions
from strategies.lowrank import Factors, inject, site_shapes, use_factors


def site_key(name: str) -> str:
    """A site name as a ParameterDict key (keys cannot contain dots): 'layer4.1.conv2' -> 'layer4-1-conv2'."""
    return name.replace(".", "-")


class LoRAAdapter(nn.Module):
    """Static factors for every site: lora_A (R, D_in) kaiming-uniform, lora_B (D_out, R) zeros (peft's init)."""

    def __init__(self, shapes: dict[str, tuple[int, int]], rank: int):
        super().__init__()
        self.names = list(shapes)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for name, (d_in, d_out) in shapes.items():
            A = torch.empty(rank, d_in)  # (R, D_in)
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))  # as nn.Linear(d_in, rank).weight, like peft
            self.lora_A[site_key(name)] = nn.Parameter(A)
            self.lora_B[site_key(name)] = nn.Parameter(torch.zeros(d_out, rank))  # (D_out, R)

    def factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        return {n: (self.lora_A[site_key(n)], self.lora_B[site_key(n)]) for n in self.names}

    def freeze(self) -> None:
        self.requires_grad_(False)


class FrozenBase(nn.Module):
    """The backbone with low-rank sites injected; `forward(x, t)` runs it under `factors(x, t)`.

    Only the head (and whatever a subclass adds) trains once `freeze_base()` was called; the base's
    normalisation layers then stay in eval mode, so their running statistics do not move either.
    """

    def __init__(self, base: nn.Module, patterns: Sequence[str], rank: int, alpha: float):
        super().__init__()
        patterns = tuple(patterns) or tuple(getattr(base, "adapter_sites", ()))
        if not patterns:
            raise ValueError(f"{type(base).__name__} declares no adapter_sites; pass sites=[...] explicitly")
        self.base = base
        self.sites = inject(base, patterns, rank, alpha)  # {name: wrapper}, modules of `base`
        self.shapes = site_shapes(self.sites)  # {name: (D_in, D_out)}
        self.rank = rank
        self.base_frozen = False

    def freeze_base(self) -> None:
        head = {id(p) for p in self.base.head.parameters()}
        for p in self.base.parameters():
            if id(p) not in head:
                p.requires_grad_(False)
        self.base_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> "FrozenBase":
        super().train(mode)
        if self.base_frozen:
            for m in self.base.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def factors(self, x: Tensor, t: Tensor | None) -> dict[str, Factors]:
        raise NotImplementedError

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        with use_factors(self.sites, self.factors(x, t)):
            return self.base(x)  # (B, n_classes)

    # Experience boundaries, called by the template.
    def begin_experience(self, task: int, classes: list[int], trains: bool) -> None:
        """`task`: the experience's task label; `classes`: the labels in its training data; `trains`:
        whether it is trained for more than zero epochs."""

    def end_experience(self) -> None:
        if not self.base_frozen:
            self.freeze_base()

    def penalty(self) -> Tensor | None:
        """The method's regulariser on the current minibatch's training step (None: none)."""
        return None

    def memory_bytes(self) -> MemoryBytes:
        """What the method adds to the base, by kind (the head is the base's own)."""
        return MemoryBytes()


class AdapterModel(FrozenBase):
    """A frozen base plus a list of static adapters; `adapter_task[k]` is the task label adapter k serves."""

    def __init__(self, base: nn.Module, patterns: Sequence[str], rank: int, alpha: float):
        super().__init__(base, patterns, rank, alpha)
        self.adapters = nn.ModuleList()
        self.register_buffer("adapter_task", torch.zeros(0, dtype=torch.long))  # (K,)

    def add_adapter(self, task: int) -> LoRAAdapter:
        device = next(self.base.parameters()).device
        adapter = LoRAAdapter(self.shapes, self.rank).to(device)
        self.adapters.append(adapter)
        self.adapter_task = torch.cat([self.adapter_task, torch.tensor([task], device=self.adapter_task.device)])
        return adapter

    def memory_bytes(self) -> MemoryBytes:
        """Every adapter is a parameter of the deployed model: extra parameters, nothing stored."""
        return MemoryBytes(extra_parameters=tensor_bytes(p for a in self.adapters for p in a.parameters()))

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Grow the adapter list to the saved one first; every loaded adapter of a per-experience model is
        a finished (frozen) one."""
        n = len({k.split(".")[1] for k in state_dict if k.startswith("adapters.")})
        tasks = state_dict.get("adapter_task", torch.zeros(n, dtype=torch.long)).tolist()
        while len(self.adapters) < n:
            self.add_adapter(int(tasks[len(self.adapters)]))
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.after_load()
        return out

    def after_load(self) -> None:
        for a in self.adapters:
            a.freeze()


class SharedLoRAModel(AdapterModel):
    """`lora`: one adapter, trained on every experience in turn (the static-weight paradigm)."""

    def __init__(self, base: nn.Module, patterns: Sequence[str], rank: int, alpha: float):
        super().__init__(base, patterns, rank, alpha)
        self.add_adapter(task=0)

    def factors(self, x: Tensor, t: Tensor | None) -> dict[str, Factors]:
        return self.adapters[0].factors()

    def after_load(self) -> None:
        pass  # the one adapter keeps training


class PerTaskLoRAModel(AdapterModel):
    """`lora-per-task`: one adapter per task label, chosen per instance by the label (an oracle).

    A label with no adapter (a task not trained yet, or the warm-start task) runs the bare base.
    """

    def memory_bytes(self) -> MemoryBytes:
        """The adapters and the task label each one serves (read at test time to pick it)."""
        return super().memory_bytes() + MemoryBytes(extra_parameters=tensor_bytes([self.adapter_task]))

    def begin_experience(self, task: int, classes: list[int], trains: bool) -> None:
        for a in self.adapters:
            a.freeze()
        known = self.adapter_task.tolist()
        if trains and task in known:  # the same task again: its own adapter learns on
            self.adapters[known.index(task)].requires_grad_(True)
        elif trains:
            self.add_adapter(task)

    def factors(self, x: Tensor, t: Tensor | None) -> dict[str, Factors]:
        if len(self.adapters) == 0:
            return {}
        if t is None:
            raise ValueError("lora-per-task needs the task label of every instance (it is a task-label oracle)")
        # slot K is a zero adapter for labels without one (not trained yet, or the warm-start task)
        K = len(self.adapters)
        size = max(int(t.max()), int(self.adapter_task.max())) + 1
        slot = torch.full((size,), K, dtype=torch.long, device=t.device)
        slot[self.adapter_task.to(t.device)] = torch.arange(K, device=t.device)
        index = slot[t]  # (B,)
        out = {}
        for name in self.shapes:
            A = torch.stack([a.lora_A[site_key(name)] for a in self.adapters])  # (K, R, D_in)
            B = torch.stack([a.lora_B[site_key(name)] for a in self.adapters])  # (K, D_out, R)
            A = torch.cat([A, A.new_zeros(1, *A.shape[1:])])  # (K + 1, R, D_in)
            B = torch.cat([B, B.new_zeros(1, *B.shape[1:])])  # (K + 1, D_out, R)
            out[name] = (A[index], B[index])  # (B, R, D_in), (B, D_out, R)
        return out


class OLoRAModel(AdapterModel):
    """`olora`: a new adapter per trained experience, all summed; orthogonality to the frozen ones."""

    def __init__(self, base: nn.Module, patterns: Sequence[str], rank: int, alpha: float, lambda_orth: float):
        super().__init__(base, patterns, rank, alpha)
        self.lambda_orth = lambda_orth

    def begin_experience(self, task: int, classes: list[int], trains: bool) -> None:
        for a in self.adapters:
            a.freeze()
        if trains:
            self.add_adapter(task)

    def factors(self, x: Tensor, t: Tensor | None) -> dict[str, Factors]:
        if len(self.adapters) == 0:
            return {}
        # sum_k B_k A_k = [B_1 .. B_K] [A_1; ..; A_K]: one rank-K*R factor pair, same scaling
        return {name: (torch.cat([a.lora_A[site_key(name)] for a in self.adapters]),  # (K R, D_in)
                       torch.cat([a.lora_B[site_key(name)] for a in self.adapters], dim=1))  # (D_out, K R)
                for name in self.shapes}

    def orthogonality_loss(self) -> Tensor:
        """sum over sites and frozen adapters i of sum |A_i A_new^T| (O-LoRA's L_orth), new = the last adapter."""
        device = self.adapter_task.device
        if len(self.adapters) < 2 or not any(p.requires_grad for p in self.adapters[-1].parameters()):
            return torch.zeros((), device=device)
        new = self.adapters[-1]
        loss = torch.zeros((), device=device)
        for name in self.shapes:
            A_new = new.lora_A[site_key(name)]  # (R, D_in)
            for old in self.adapters[:-1]:
                loss = loss + (old.lora_A[site_key(name)] @ A_new.T).abs().sum()  # |(R, R)|
        return loss

    def penalty(self) -> Tensor | None:
        return self.lambda_orth * self.orthogonality_loss() if self.lambda_orth > 0 else None


def experience_labels(experience: Any) -> tuple[int, list[int]]:
    """The one task label of a training experience and the classes in its data."""
    tensors = dataset_tensors(experience.dataset)
    if tensors is not None:
        tasks, classes = tensors[-1].unique().tolist(), tensors[1].unique().tolist()
    else:
        tasks = sorted(set(experience.dataset.targets_task_labels))
        classes = sorted(set(int(y) for y in experience.dataset.targets))
    if len(tasks) != 1:
        raise ValueError(f"a training experience must carry one task label, this one has {tasks}")
    return int(tasks[0]), [int(c) for c in classes]


def _keep_own_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    return optimizer.state_dict()


class LoRATemplate(HarnessTemplate):
    """HarnessTemplate for a `FrozenBase` model: the task label goes into forward, the optimizer holds
    the currently trainable parameters only, and the model's penalty joins the training loss."""

    model: FrozenBase

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # The optimizer's parameters and state are rebuilt at every experience start (make_optimizer), so
        # a state saved between experiences has nothing to restore, and its parameter list can differ
        # from a fresh strategy's (new adapters, frozen ones): loading one keeps the optimizer as it is.
        self.optimizer.register_load_state_dict_pre_hook(_keep_own_state)

    def forward(self) -> Tensor:  # (precision: HarnessTemplate's PrecisionMixin autocasts around this)
        return self.model(self.mb_x, self.mb_task_id)

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        task, classes = experience_labels(self.experience)
        self.model.begin_experience(task=task, classes=classes, trains=self.train_epochs > 0)
        self.model = self.model_adaptation()
        self.make_optimizer()

    def make_optimizer(self, **kwargs: Any) -> None:
        # Avalanche's version adds every model parameter; frozen adapters and the base must stay out.
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.param_groups[0]["params"] = params
        self.optimizer.state.clear()

    def criterion(self) -> Tensor:
        loss = super().criterion()
        if self.is_training:
            penalty = self.model.penalty()
            if penalty is not None:
                loss = loss + penalty
        return loss

    def _after_training_exp(self, **kwargs: Any) -> None:
        self.model.end_experience()
        super()._after_training_exp(**kwargs)

    def memory_bytes(self) -> MemoryBytes:
        return super().memory_bytes() + self.model.memory_bytes()

    def state_dict(self) -> dict[str, Any]:
        """Everything the method learnt and keeps: base, head, adapters (and embeddings, snapshots)."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)
        self.model.to(self.device)


def make_template(model: FrozenBase, setup: TrainingSetup, lr: float | None,
                  cls: type[LoRATemplate] = LoRATemplate) -> LoRATemplate:
    if setup.spec.warm_start:
        model.freeze_base()
    return cls(model=model, optimizer=setup.optimizer(model.parameters(), lr), **setup.template_kwargs())


def build_lora(model: nn.Module, setup: TrainingSetup, options: LoRAOptions) -> LoRATemplate:
    return make_template(SharedLoRAModel(model, options.sites, options.rank, options.alpha), setup, options.lr)


def build_lora_per_task(model: nn.Module, setup: TrainingSetup, options: LoRAOptions) -> LoRATemplate:
    """An oracle reference: it needs every test instance's task label to pick the adapter."""
    return make_template(PerTaskLoRAModel(model, options.sites, options.rank, options.alpha), setup, options.lr)


def build_olora(model: nn.Module, setup: TrainingSetup, options: OLoRAOptions) -> LoRATemplate:
    olora = OLoRAModel(model, options.sites, options.rank, options.alpha, options.lambda_orth)
    return make_template(olora, setup, options.lr)
