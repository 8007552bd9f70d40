"""What a run keeps beyond its base model, by kind, and memory budgets that size it. Light: no torch.

Kinds (`MemoryBytes`, in bytes; docs/memory.md has every strategy's accounting):

- `raw_inputs`: buffers of inputs with their labels and condition tokens (replay, A-GEM, GEM);
- `derived`: what is computed from inputs and kept: features, anchors, logits (HY-WU's anchors, DER's logits);
- `model_state`: state copied from the model for the past: importances and old parameters (EWC, SI),
  old models (LwF), snapshots of generated outputs (HY-WU, hnet);
- `extra_parameters`: parameters the method adds to the deployed model (generators, adapters, embeddings).

`stored` (the first three) is what a budget limits and what `stored_memory_bytes` reports; the extra
parameters are their own number, beside it.

A budget (`RunSpec.memory_budget`, bytes) sizes a strategy's memory when the run's settings are resolved
(`settings.resolve_hyperparameters`): a strategy opts in with one declaration at registration,

    STRATEGIES.register("replay", ..., budget=Budget("mem_size"))

naming the option that sets how many items it keeps, whether that counts items over the run or per
experience, and, for memories that are not raw-input buffers, a function giving the fixed bytes and the
bytes per item (`sizer`, "module:function", imported only when a run is sized). The count chosen is the
largest that fits: fixed + bytes per item * items kept <= budget. A method that declares no budget (EWC's
importances, a generator) runs unchanged and is marked over or under its budget (`budget_status`).
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

from hywu_bench.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("raw_inputs", "derived", "model_state", "extra_parameters")
TOLERANCE = 0.05  # a sized run keeps within 5% of its budget
BYTE_UNITS = {"": 1, "b": 1, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30}  # lower-case unit -> bytes
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.I)


@dataclass(frozen=True)
class MemoryBytes:
    raw_inputs: int = 0  # buffers of inputs, with their labels and condition tokens
    derived: int = 0  # features, anchors, logits computed from inputs
    model_state: int = 0  # importances, old-model copies, snapshots of generated outputs
    extra_parameters: int = 0  # parameters added to the deployed model (generators, adapters, embeddings)

    @property
    def stored(self) -> int:
        """What the method keeps for the past: raw inputs + derived + model state (budgets limit this)."""
        return self.raw_inputs + self.derived + self.model_state

    def __add__(self, other: "MemoryBytes") -> "MemoryBytes":
        return MemoryBytes(*(getattr(self, k) + getattr(other, k) for k in KINDS))

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------------------
# Sizes as users write them


def parse_bytes(value: Any, what: str = "memory_budget") -> int:
    """Bytes from `1468006`, `"1.4MiB"`, `"512KiB"`, `"2GiB"` (binary units; case-insensitive), > 0."""
    if isinstance(value, bool):
        raise UserError(f"{what} = {value!r} is not a size; write bytes (1468006) or KiB/MiB/GiB (1.4MiB).")
    if isinstance(value, str) and value.strip().lower().startswith("match:"):
        raise UserError(f"{what}={value} works in compare only (it runs the named strategy first and gives the "
                        "others its bytes); here give a size, e.g. memory_budget=1.4MiB.")
    match = _SIZE.match(str(value)) if isinstance(value, (str, int, float)) else None
    unit = BYTE_UNITS.get(match.group(2).lower()) if match else None
    if unit is None:
        raise UserError(f"{what} = {value!r} is not a size; write bytes (1468006) or KiB/MiB/GiB (1.4MiB).")
    size = round(float(match.group(1)) * unit)
    if size <= 0:
        raise UserError(f"{what} must be > 0 bytes (got {value!r}).")
    return size


def format_bytes(n: int) -> str:
    """1513984 -> '1.44 MiB' (for messages and docs)."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budget:
    """How a budget sizes a strategy: the one option that sets how many items its memory keeps."""

    option: str  # the option holding the count, e.g. replay's "mem_size"
    per: Literal["run", "experience"] = "run"  # the count is of items over the run, or kept from each experience
    item_extra: int = 0  # bytes an item keeps besides input, label and condition token (replay: a float32 weight)
    sizer: str | None = None  # "module:function" (spec, info, options) -> (fixed bytes, bytes per item);
    # None: a raw-input buffer, item = input + label + condition token (`raw_item_bytes`), nothing fixed

    def __post_init__(self) -> None:
        if self.per not in ("run", "experience"):
            raise ValueError(f"Budget.per must be 'run' or 'experience' (got {self.per!r})")
        if self.sizer is not None and ":" not in self.sizer:
            raise ValueError(f"Budget.sizer reads 'module:function', not {self.sizer!r}")

    def costs(self, spec: Any, info: Any, options: Any) -> tuple[int, int]:
        """(fixed bytes, bytes per item) for this run."""
        if self.sizer is None:
            return 0, raw_item_bytes(info) + self.item_extra
        module, _, attr = self.sizer.partition(":")
        fn: Callable[..., tuple[int, int]] = getattr(importlib.import_module(module), attr)
        fixed, item = fn(spec, info, options)
        return int(fixed), int(item) + self.item_extra

    def count(self, spec: Any, info: Any, options: Any, budget: int) -> int | None:
        """The largest count whose memory fits `budget`, or None when not even one item fits."""
        fixed, item = self.costs(spec, info, options)
        sizes = [e.n_train for e in info.experiences]
        if self.per == "run":
            k = min((budget - fixed) // item, sum(sizes)) if budget >= fixed else 0
        else:  # items kept = sum_e min(k, n_e): monotone in k, so bisect
            lo, hi = 0, max(sizes, default=0)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fixed + item * sum(min(mid, n) for n in sizes) <= budget else (lo, mid - 1)
            k = lo
        return int(k) if k >= 1 else None


def raw_item_bytes(info: Any) -> int:
    """Bytes of one stored instance: its input (float32), label (int64) and condition token (float32), as
    `data.ExperienceTensors` holds them. Task labels are not counted (one per experience)."""
    return 4 * math.prod(info.input_shape) + 8 + 4 * info.condition_dim


def sized_options(entry: Any, spec: Any, info: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The strategy options with its budgeted option sized to `spec.memory_budget` (unchanged without a
    budget, for a strategy that declares none, or when not one item fits: that run is marked over)."""
    budget: Budget | None = entry.budget
    if spec.memory_budget is None or budget is None:
        return options
    from hywu_bench.registry import STRATEGIES

    k = budget.count(spec, info, STRATEGIES.options(entry.name, options), spec.memory_budget)
    if k is None:
        log.warning("%s: a memory budget of %d bytes holds not one item; it runs with %s unchanged",
                    entry.name, spec.memory_budget, budget.option)
        return options
    return {**options, budget.option: k}


def check_budget_request(entry: Any, memory_budget: int | None, user_options: dict[str, Any]) -> None:
    """A budget sizes the option it declares: setting both is a contradiction, refused before any work."""
    budget: Budget | None = entry.budget
    if memory_budget is not None and budget is not None and budget.option in user_options:
        raise UserError(f"memory_budget sizes {entry.name}'s {budget.option}; drop {budget.option}="
                        f"{user_options[budget.option]!r} or the budget.")


def budget_status(budget: int | None, used: int | None, sizable: bool) -> str | None:
    """'sized' (within TOLERANCE of the budget, by the strategy's own sizing), else 'over' or 'under' the
    budget; None without a budget."""
    if budget is None or used is None:
        return None
    if sizable and abs(used - budget) <= TOLERANCE * budget:
        return "sized"
    return "over" if used > budget else "under"


def memory_summary(spec: Any, per_experience: list[dict[str, Any]], sizable: bool) -> dict[str, Any]:
    """metrics.json's memory fields: the final bytes by kind, the budget and its status (the peak stored
    bytes over the stream against the budget)."""
    last = per_experience[-1] if per_experience else {}
    memory = last.get("memory")
    peak = max((r["stored_memory_bytes"] for r in per_experience), default=None)
    status = budget_status(spec.memory_budget, peak, sizable)
    if status in ("over", "under") and sizable:
        log.warning("%s kept %s bytes against a budget of %s: %s it by more than %d%%", spec.run_name, peak,
                    spec.memory_budget, status, round(100 * TOLERANCE))
    return {"memory": memory, "memory_budget_bytes": spec.memory_budget, "memory_budget_status": status}
