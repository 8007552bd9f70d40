"""Scenario descriptions and the tensor data path.

A scenario builder returns a `Scenario`: an Avalanche benchmark (train/test streams of experiences) built
from in-memory tensors, plus a `ScenarioInfo` that says what the stream is (setting, classes, input
shape, per-experience metadata, whether instances carry a condition token).

Avalanche's own data path fetches one sample at a time through transform groups; that alone made a run
2.6x slower than a plain PyTorch loop. `TensorLoader` reads the tensors beneath an Avalanche dataset
(also through the subsets and concatenations that replay buffers make) and yields whole minibatches by
indexing, which is what makes the harness cost close to a plain loop. Anything it cannot see through
(a dataset with transforms, or not made of tensors) falls back to Avalanche's loader.

A minibatch is `[x, y, t]`, or `[x, y, c, t]` when the scenario gives every instance a condition token
`c` (personalization streams): the task label stays last, as Avalanche's templates expect.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class ExperienceInfo:
    index: int
    classes: tuple[int, ...]  # labels present in this experience
    dataset: str  # e.g. "digits", "fashion-mnist"
    transform: str = "none"  # e.g. "permute(seed=3)", "rotate(30)"
    user: int | None = None  # personalization streams: whose preferences
    n_train: int = 0
    n_test: int = 0

    @property
    def label(self) -> str:
        """A short name for tables and figures."""
        if self.user is not None:
            return f"user{self.user}"
        if self.transform != "none":
            return self.transform
        return ",".join(map(str, self.classes)) if len(self.classes) <= 3 else f"{len(self.classes)} classes"


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    setting: str  # "class" | "domain" | "task" incremental
    n_classes: int
    input_shape: tuple[int, ...]  # (C, H, W)
    experiences: tuple[ExperienceInfo, ...]
    condition_dim: int = 0  # > 0: every instance carries a condition token of this size
    recommended: dict[str, Any] = field(default_factory=dict)  # epochs, batch_size, lr, backbone
    options: dict[str, Any] = field(default_factory=dict)  # the scenario's resolved options

    @property
    def n_experiences(self) -> int:
        return len(self.experiences)

    @property
    def task_aware(self) -> bool:
        """Task labels at test time (task-incremental): logits are masked to the task's classes."""
        return self.setting == "task"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["experiences"] = [{**asdict(e), "label": e.label} for e in self.experiences]
        return out


@dataclass
class Scenario:
    benchmark: Any  # avalanche CLScenario with train_stream and test_stream
    info: ScenarioInfo

    @property
    def train_stream(self) -> Any:
        return self.benchmark.train_stream

    @property
    def test_stream(self) -> Any:
        return self.benchmark.test_stream


@dataclass
class ExperienceTensors:
    """One experience's data: inputs, labels, optional condition tokens; the task label is constant."""

    x: Tensor  # (N, C, H, W) float32
    y: Tensor  # (N,) int64
    task: int = 0
    condition: Tensor | None = None  # (N, condition_dim)

    def __post_init__(self) -> None:
        assert self.x.shape[0] == self.y.shape[0], "x and y must have the same length"
        assert self.condition is None or self.condition.shape[0] == self.x.shape[0]


def _avalanche_dataset(part: ExperienceTensors) -> Any:
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    tensors = [part.x, part.y] + ([part.condition] if part.condition is not None else [])
    dataset = _make_taskaware_tensor_classification_dataset(*tensors, task_labels=part.task, targets=part.y)
    # Carried through Avalanche's shallow copies (.train(), .eval()); subsets and concatenations are new
    # objects without it and are read through `_read_tensors`.
    dataset._harness_tensors = tensors + [torch.full((len(part.y),), part.task, dtype=torch.long)]
    return dataset


def make_scenario(train: Sequence[ExperienceTensors], test: Sequence[ExperienceTensors],
                  info: ScenarioInfo) -> Scenario:
    """An Avalanche benchmark with one experience per (train, test) pair, straight from tensors."""
    from avalanche.benchmarks import benchmark_from_datasets

    if len(train) != len(test) or len(train) != info.n_experiences:
        raise ValueError("train, test and info.experiences must have the same number of experiences")
    benchmark = benchmark_from_datasets(
        train=[_avalanche_dataset(p) for p in train], test=[_avalanche_dataset(p) for p in test]
    )
    return Scenario(benchmark, info)


def holdout(scenario: Scenario, fraction: float, seed: int) -> Scenario:
    """The same stream evaluated on held-out training data: for choosing hyperparameters.

    A seeded random `fraction` of every experience's training data becomes that experience's evaluation
    set, the rest its training set; the test split is dropped, so nothing tuned this way has seen it.
    Streams that draw every experience from one training pool (drift, personalization) may show the same
    image in another experience under another transform or user; the test images never appear.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    train, held, infos = [], [], []
    for k, (exp, info) in enumerate(zip(scenario.train_stream, scenario.info.experiences)):
        tensors = dataset_tensors(exp.dataset)
        if tensors is None:
            raise ValueError("validation needs a scenario built from tensors (make_scenario)")
        x, y, t = tensors[0], tensors[1], tensors[-1]
        condition = tensors[2] if len(tensors) == 4 else None
        n_held = int(round(fraction * len(y)))
        if n_held < 1 or n_held >= len(y):
            raise ValueError(f"experience {k} has {len(y)} training instances: too few to hold out {fraction:g}")
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
        parts = []
        for index in (order[n_held:], order[:n_held]):
            parts.append(ExperienceTensors(x[index], y[index], int(t[0]),
                                           None if condition is None else condition[index]))
        train.append(parts[0]), held.append(parts[1])
        infos.append(replace(info, n_train=len(y) - n_held, n_test=n_held))
    info = replace(scenario.info, experiences=tuple(infos), options={**scenario.info.options, "validation": fraction})
    return make_scenario(train, held, info)


# ---------------------------------------------------------------------------------------------------
# The fast path: tensors beneath an Avalanche dataset.

_TENSOR_CACHE: "weakref.WeakKeyDictionary[Any, list[Tensor] | None]" = weakref.WeakKeyDictionary()


def dataset_tensors(dataset: Any) -> list[Tensor] | None:
    """`[x, y, (c,) t]` for the whole dataset in its own order, or None if it is not plain tensors."""
    own = getattr(dataset, "_harness_tensors", None)
    if own is not None and len(own[0]) == len(dataset):
        return own
    try:
        return _TENSOR_CACHE[dataset]
    except (KeyError, TypeError):
        pass
    tensors = _read_tensors(dataset)
    try:
        _TENSOR_CACHE[dataset] = tensors
    except TypeError:
        pass
    return tensors


def _read_tensors(dataset: Any) -> list[Tensor] | None:
    flat = getattr(dataset, "_flat_data", None)
    parts = getattr(flat, "_datasets", None)
    if not parts or not all(isinstance(p, TensorDataset) for p in parts):
        return None
    if _has_transforms(flat):
        return None
    width = len(parts[0].tensors)
    if any(len(p.tensors) != width for p in parts):
        return None
    index = torch.as_tensor(list(flat._get_lazy_indices()), dtype=torch.long)
    columns = [torch.cat([p.tensors[k] for p in parts])[index] for k in range(width)]
    columns[1] = columns[1].long()
    tasks = torch.as_tensor(list(dataset.targets_task_labels), dtype=torch.long)
    return columns + [tasks]


def _has_transforms(flat: Any) -> bool:
    for groups in (getattr(flat, "_transform_groups", None), getattr(flat, "_frozen_transform_groups", None)):
        if groups is None:
            continue
        for pair in groups.transform_groups.values():
            if pair is None:
                continue
            if any(getattr(t, "transforms", t) not in (None, []) for t in _as_list(pair)):
                return True
    return False


def _as_list(pair: Any) -> list[Any]:
    return list(pair) if isinstance(pair, (list, tuple)) else [pair]


class TensorLoader:
    """Minibatches by indexing tensors: shuffled with the global torch RNG (seeded per run)."""

    def __init__(self, tensors: list[Tensor], batch_size: int, shuffle: bool, drop_last: bool = False):
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.n = tensors[0].shape[0]

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[Tensor]]:
        order = torch.randperm(self.n) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                yield [t[start:start + self.batch_size] for t in self.tensors]
            else:
                idx = order[start:start + self.batch_size]
                yield [t[idx] for t in self.tensors]
