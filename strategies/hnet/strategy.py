"""`hnet`'s model (declared, with its options, in `strategies/hnet/__init__.py`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hywu_bench.errors import UserError
from hywu_bench.memory import MemoryBytes
from hywu_bench.training import TrainingSetup, module_bytes, tensor_bytes
from strategies.hnet import HNetOptions
from strategies.hywu.generator import GeneratorConfig, build_generator
from strategies.lora.strategy import FrozenBase, LoRATemplate, make_template
from strategies.lowrank import Factors, use_factors

NO_TASK = -1


def infer_task_by_entropy(logits: Tensor, allowed: Tensor | None = None) -> Tensor:
    """(K, B, C) logits of K candidate tasks -> (B,) index of the candidate with the lowest entropy.

    `allowed` (K, C) restricts each candidate's softmax to its own classes.
    """
    if allowed is not None:
        logits = logits.masked_fill(~allowed[:, None, :], float("-inf"))
    logp = logits.log_softmax(-1)  # (K, B, C)
    entropy = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)  # (K, B)
    return entropy.argmin(0)  # (B,)


class HNetModel(FrozenBase):
    """A frozen base whose sites get factors h(e_t) from a hypernetwork over learned task embeddings."""

    def __init__(self, base: nn.Module, patterns: tuple[str, ...], rank: int, alpha: float, embedding_dim: int,
                 hidden: int, beta: float, infer_task: bool):
        super().__init__(base, patterns, rank, alpha)
        self.generator = build_generator(embedding_dim, self.shapes,
                                         GeneratorConfig(arch="mlp", rank=rank, hidden=hidden))
        self.embedding_dim, self.beta, self.infer_task = embedding_dim, beta, infer_task
        self.n_classes = base.head.out_features
        self.embeddings = nn.ParameterList()  # e_t, (E,) each
        self.register_buffer("embedding_task", torch.zeros(0, dtype=torch.long))  # (K,) task label of e_t
        self.register_buffer("embedding_classes", torch.zeros(0, self.n_classes, dtype=torch.bool))  # (K, C)
        self.register_buffer("snapshots", torch.zeros(0, self.n_outputs))  # (K_old, N): h*(e_t') flattened
        self.current = NO_TASK  # index of the embedding being learnt

    @property
    def n_outputs(self) -> int:
        return sum(self.rank * (d_in + d_out) for d_in, d_out in self.shapes.values())

    # -- the hypernetwork ------------------------------------------------------------------------------
    def generate(self, index: list[int] | None = None) -> dict[str, Factors]:
        """Factors for the embeddings `index` (all when None), (K, R, D_in) and (K, D_out, R) per site."""
        e = torch.stack(list(self.embeddings))  # (K, E)
        return self.generator(e if index is None else e[index])

    def flat_outputs(self, index: list[int]) -> Tensor:
        """h(e_t) for t in index, every generated number in one row: (len(index), N)."""
        factors = self.generate(index)
        return torch.cat([t.flatten(1) for s in self.shapes for t in factors[s][:2]], dim=1)

    # -- experience boundaries -------------------------------------------------------------------------
    def begin_experience(self, task: int, classes: list[int], trains: bool) -> None:
        for e in self.embeddings:
            e.requires_grad_(False)
        known = self.embedding_task.tolist()
        if not self.infer_task and task in known:  # the same task again: keep learning its embedding
            self.current = known.index(task)
        else:
            self.add_embedding(task, classes)
            self.current = len(self.embeddings) - 1
        self.embeddings[self.current].requires_grad_(True)

    def add_embedding(self, task: int, classes: list[int]) -> None:
        device = self.embedding_task.device
        self.embeddings.append(nn.Parameter(torch.randn(self.embedding_dim, device=device)))
        self.embedding_task = torch.cat([self.embedding_task, torch.tensor([task], device=device)])
        mask = torch.zeros(1, self.n_classes, dtype=torch.bool, device=device)
        mask[0, classes] = True
        self.embedding_classes = torch.cat([self.embedding_classes, mask])

    @torch.no_grad()
    def end_experience(self) -> None:
        super().end_experience()
        self.current = NO_TASK
        self.snapshot()

    @torch.no_grad()
    def snapshot(self) -> None:
        """h*(e_t) for every known embedding: the targets of the regulariser from now on."""
        self.snapshots = self.flat_outputs(list(range(len(self.embeddings)))).detach().clone()

    def regulariser(self) -> Tensor:
        """beta / |old| * sum over old embeddings t' of ||h(e_t') - h*(e_t')||^2 (the current one excluded)."""
        old = [k for k in range(self.snapshots.shape[0]) if k != self.current]
        if not old or self.beta == 0:
            return self.snapshots.new_zeros(())
        drift = self.flat_outputs(old) - self.snapshots[old]  # (|old|, N)
        return self.beta / len(old) * drift.pow(2).sum()

    def penalty(self) -> Tensor | None:
        return self.regulariser()

    # -- forward -------------------------------------------------------------------------------------
    def factors(self, x: Tensor, t: Tensor | None) -> dict[str, Factors]:
        if len(self.embeddings) == 0:
            return {}
        if self.current != NO_TASK and self.training:
            return {s: (A[0], B[0]) for s, (A, B) in self.generate([self.current]).items()}  # shared
        if t is None:
            raise ValueError("hnet needs the task label of every instance unless infer_task=true")
        index = self.embedding_index(t)  # (B,), K = no embedding: the bare base
        out = {}
        for s, (A, B) in self.generate().items():
            A = torch.cat([A, A.new_zeros(1, *A.shape[1:])])  # (K + 1, R, D_in)
            B = torch.cat([B, B.new_zeros(1, *B.shape[1:])])  # (K + 1, D_out, R)
            out[s] = (A[index], B[index])  # (B, R, D_in), (B, D_out, R)
        return out

    def embedding_index(self, t: Tensor) -> Tensor:
        K = len(self.embeddings)
        slot = torch.full((max(int(t.max()), int(self.embedding_task.max())) + 1,), K, dtype=torch.long,
                          device=t.device)
        slot[self.embedding_task.to(t.device)] = torch.arange(K, device=t.device)  # labels are unique here
        return slot[t]

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        if not self.infer_task or len(self.embeddings) == 0:
            return super().forward(x, t)
        if self.training and self.current != NO_TASK:  # learn within the experience's own classes
            out = super().forward(x, t)
            return out.masked_fill(~self.embedding_classes[self.current], -1e4)
        return self.forward_inferred(x)

    def forward_inferred(self, x: Tensor) -> Tensor:
        """Each instance through every known embedding; keep the lowest-entropy one's logits."""
        generated = self.generate()
        logits = []
        for k in range(len(self.embeddings)):
            with use_factors(self.sites, {s: (A[k], B[k]) for s, (A, B) in generated.items()}):
                logits.append(self.base(x))  # (B, C)
        logits = torch.stack(logits)  # (K, B, C)
        chosen = infer_task_by_entropy(logits, self.embedding_classes)  # (B,)
        out = logits[chosen, torch.arange(x.shape[0], device=x.device)]  # (B, C)
        return out.masked_fill(~self.embedding_classes[chosen], -1e4)

    # -- memory and state ----------------------------------------------------------------------------
    def memory_bytes(self) -> MemoryBytes:
        """The snapshots of h's outputs: model state. The hypernetwork, the task embeddings and the task
        label and class mask of each (read at test time): extra parameters of the deployed model."""
        extra = module_bytes(self.generator) + tensor_bytes([*self.embeddings, self.embedding_task,
                                                             self.embedding_classes])
        return MemoryBytes(model_state=tensor_bytes([self.snapshots]), extra_parameters=extra)

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Grow the embeddings and buffers to the saved ones first; loaded embeddings are finished ones."""
        n = len({k.split(".")[1] for k in state_dict if k.startswith("embeddings.")})
        while len(self.embeddings) < n:
            self.embeddings.append(nn.Parameter(torch.zeros(self.embedding_dim), requires_grad=False))
        for name in ("embedding_task", "embedding_classes", "snapshots"):
            setattr(self, name, torch.empty_like(state_dict[name]))
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        for e in self.embeddings:
            e.requires_grad_(False)
        self.current = NO_TASK
        return out


def build_hnet(model: nn.Module, setup: TrainingSetup, options: HNetOptions) -> LoRATemplate:
    """Needs the task label at test time (task-incremental streams), or `infer_task=true` elsewhere."""
    if setup.info.setting != "task" and not options.infer_task:
        raise UserError(
            f"strategy 'hnet' picks its task embedding by the task label at test time, which the "
            f"{setup.info.setting}-incremental scenario '{setup.info.name}' does not give. Run it on a "
            f"task-incremental stream (--set setting=task), or infer the task by predictive entropy "
            f"(--set strategy.infer_task=true).")
    hnet = HNetModel(model, options.sites, options.rank, options.alpha, options.embedding_dim, options.hidden,
                     options.beta, options.infer_task)
    return make_template(hnet, setup, options.lr)
