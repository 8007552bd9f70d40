"""`hnet`: a task-conditioned hypernetwork generating LoRA factors, with its output regulariser.

von Oswald, Henning, Grewe & Sacramento 2020, "Continual learning with hypernetworks" (ICLR), on the
harness's frozen base: every experience gets a learned task embedding e_t; a hypernetwork h maps it to
low-rank factors {site: (lora_A, lora_B)} for the base's adapter sites (the same factors HY-WU
generates per instance; here they are generated per TASK). While learning task T the loss is

    L_task + beta / |old| * sum_{t' in old} || h(e_t') - h*(e_t') ||^2

where h*(e_t') are snapshots of h's outputs taken before task T, stored with the (frozen) old
embeddings. The hypernetwork is `strategies.hywu.generator`'s `mlp` generator (a trunk and per-site
linear heads; lora_B starts at zero, so an untrained task runs the bare base).

It USES THE TASK LABEL AT TEST TIME to pick the embedding (task-incremental streams). With
`infer_task=true` the task is inferred instead, per instance, as the known embedding whose prediction
has the lowest entropy (von Oswald et al.'s HNET+ENT); each embedding then predicts among the classes
of its own experience (a head restricted to the task's classes, as their multi-head setup), both in
training and in inference, so it also runs class- and domain-incremental streams.

Memory (`memory_bytes()`, docs/memory.md): the snapshots of h's outputs are stored (`model_state`); the
hypernetwork, the task embeddings and their task labels and class masks are parameters of the deployed
model (`extra_parameters`).

The model is in `strategy.py`, imported only when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from hywu_bench.registry import ALL_SETTINGS, STRATEGIES
from strategies.lora import check_options


@dataclass(frozen=True)
class HNetOptions:
    rank: int = 8  # R of the generated factors
    alpha: float = 8.0  # scaling = alpha / rank
    sites: tuple[str, ...] = ()  # layer-name patterns to adapt; empty: the backbone's adapter_sites
    embedding_dim: int = 32  # size of a task embedding (von Oswald et al. 2020 use 32)
    hidden: int = 100  # width of the hypernetwork's trunk
    beta: float = 0.01  # weight of the output regulariser (von Oswald et al.'s default)
    infer_task: bool = False  # true: infer the task by the lowest predictive entropy (no task label at test)
    lr: float | None = None  # learning rate of hypernetwork, embeddings and head; None: the run's

    def __post_init__(self) -> None:
        check_options(self.rank, self.alpha, self.lr)
        for name in ("embedding_dim", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (got {self.beta})")


STRATEGIES.register("hnet", help="task-embedding hypernetwork generating LoRA factors (von Oswald et al. 2020); "
                                 "uses the task label at test time unless infer_task=true",
                    settings=ALL_SETTINGS, options=HNetOptions, builder="strategies.hnet.strategy:build_hnet")
