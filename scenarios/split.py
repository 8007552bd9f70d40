"""The split family: a dataset's classes cut into disjoint groups, one experience per group.

Class-incremental (`setting="class"`, the default): one head over all classes, no task label at test
time. Task-incremental (`setting="task"`): the task label is given at test time and selects the group's
classes. The class order is shuffled by the run's seed (fixed per seed), as in most split benchmarks;
`shuffle_classes=false` keeps the natural order 0, 1, 2, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from hywu_bench.config import RunSpec
from hywu_bench.data import ExperienceInfo, ExperienceTensors, Scenario, ScenarioInfo, make_scenario
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS
from scenarios.datasets import TensorData, load_dataset


@dataclass(frozen=True)
class SplitOptions:
    n_experiences: int = 5  # groups of n_classes / n_experiences classes each
    setting: Literal["class", "task"] = "class"  # task: the task label is given at test time
    shuffle_classes: bool = True  # shuffle the class order with the run's seed


def class_order(n_classes: int, seed: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n_classes))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_classes, generator=g).tolist()


def split_scenario(name: str, data: TensorData, spec: RunSpec, options: SplitOptions,
                   recommended: dict) -> Scenario:
    n, k = data.n_classes, options.n_experiences
    if k < 1 or n % k:
        raise UserError(f"{name}: n_experiences={k} must divide the {n} classes evenly.")
    order = class_order(n, spec.seed, options.shuffle_classes)
    groups = [tuple(sorted(order[i * n // k:(i + 1) * n // k])) for i in range(k)]
    train, test, infos = [], [], []
    for i, classes in enumerate(groups):
        task = i if options.setting == "task" else 0
        parts = []
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
            keep = torch.isin(y, torch.tensor(classes))
            parts.append(ExperienceTensors(x[keep], y[keep], task))
        train.append(parts[0])
        test.append(parts[1])
        infos.append(ExperienceInfo(i, classes, data.name, n_train=len(parts[0].y), n_test=len(parts[1].y)))
    info = ScenarioInfo(name, options.setting, n, data.input_shape, tuple(infos),
                        recommended=recommended, options=vars(options))
    return make_scenario(train, test, info)


def _register(name: str, dataset: str, help: str, recommended: dict, aliases: tuple[str, ...] = (),
              options: type = SplitOptions) -> None:
    @SCENARIOS.register(name, help=help, settings=("class", "task"), options=options, aliases=aliases)
    def build(spec: RunSpec, options: SplitOptions) -> Scenario:
        data = load_dataset(dataset, spec.data_root, spec.download)
        return split_scenario(name, data, spec, options, recommended)


_register("split-digits", "digits",
          "scikit-learn's bundled 8x8 digits in 5 experiences of 2 classes (no download; the default)",
          dict(epochs=10, batch_size=32, lr=0.05))
