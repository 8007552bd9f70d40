"""The LoRA family on a frozen base: one shared adapter, one adapter per task (an oracle), and O-LoRA.

Every method here wraps the backbone's adapter sites with the shared low-rank operator
(`strategies.lowrank`), freezes the base after its warm start and trains static adapters plus the
output head. What differs is how many adapters there are and which ones a forward pass uses:

| name          | adapters                              | at test time                   | reference              |
|---------------|---------------------------------------|--------------------------------|------------------------|
| lora          | one, fine-tuned on every experience   | the one adapter                | Hu et al. 2021         |
| lora-per-task | a new one per task label (ORACLE)     | chosen by the task label       |                        |
| olora         | a new one per experience, orthogonal  | all summed, no task label      | Wang et al. 2023       |
|               | to the earlier (frozen) ones          |                                |                        |

- Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (lora_A kaiming-uniform,
  lora_B zeros, scaling = alpha / rank, as huggingface/peft initialises them).
- Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning" (O-LoRA):
  loss + lambda * sum_{i < t} sum_{j,k} |A_i A_t^T|_{jk}, per site.

The base is frozen when the strategy is built if the run used the shared warm start; otherwise it is
trained (with the first adapter and the head) on the first experience and frozen after it. An
experience trained for zero epochs (the warm-start experience) gets no new adapter in `lora-per-task`
and `olora`: the base already learnt it, and an untrained adapter would only add memory (and, in
O-LoRA, a random subspace that later adapters must avoid).

An adapter is frozen when the next experience begins (so the runner's trainable-parameter count after an
experience is what that experience trained). Memory (`memory_bytes()`, docs/memory.md): every adapter,
the one shared adapter of `lora` too, is a parameter of the deployed model (`extra_parameters`; with
`lora-per-task`'s table of the task label each adapter serves); nothing is stored for the past, so
`stored_memory_bytes()` is 0. (`hnet` stores the snapshots of its hypernetwork's outputs.)

The models and templates are in `strategy.py`, imported only when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from hywu_bench.registry import ALL_SETTINGS, STRATEGIES

BUILD = "strategies.lora.strategy:"


def check_options(rank: int, alpha: float, lr: float | None) -> None:
    if rank < 1:
        raise ValueError(f"rank must be >= 1 (got {rank})")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (got {alpha})")
    if lr is not None and lr <= 0:
        raise ValueError(f"lr must be > 0 (got {lr})")


@dataclass(frozen=True)
class LoRAOptions:
    rank: int = 8  # R of every adapter (peft's default)
    alpha: float = 8.0  # scaling = alpha / rank (peft's default: 1)
    sites: tuple[str, ...] = ()  # layer-name patterns to adapt; empty: the backbone's adapter_sites
    lr: float | None = None  # learning rate of adapters and head; None: the run's

    def __post_init__(self) -> None:
        check_options(self.rank, self.alpha, self.lr)


@dataclass(frozen=True)
class OLoRAOptions(LoRAOptions):
    lambda_orth: float = 0.5  # weight of the orthogonality loss (O-LoRA's lambda_1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_orth < 0:
            raise ValueError(f"lambda_orth must be >= 0 (got {self.lambda_orth})")


STRATEGIES.register("lora", help="one shared LoRA adapter on the frozen base, fine-tuned on every experience",
                    settings=ALL_SETTINGS, options=LoRAOptions, builder=BUILD + "build_lora")
STRATEGIES.register("olora", help="O-LoRA: a new adapter per experience, orthogonal to earlier ones, all summed "
                                  "(Wang et al. 2023)", settings=ALL_SETTINGS, options=OLoRAOptions,
                    builder=BUILD + "build_olora")
STRATEGIES.register("lora-per-task", help="ORACLE: a LoRA adapter per task, chosen by the task label at test time "
                                          "(task-incremental only)", settings=("task",), options=LoRAOptions,
                    builder=BUILD + "build_lora_per_task", role="oracle")
