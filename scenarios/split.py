"""The split family: a dataset's classes cut into disjoint groups, one experience per group.

Class-incremental (`setting="class"`, the default): one head over all classes, no task label at test
time. Task-incremental (`setting="task"`): the task label is given at test time and selects the group's
classes. The class order is shuffled by the run's seed (fixed per seed), as in most split benchmarks;
`shuffle_classes=false` keeps the natural order 0, 1, 2, ...

Recommended hyperparameters (used where the run does not set them):
- split-mnist / split-fmnist: the 784-256-256 MLP with plain SGD, one or two epochs per experience
  (cheap on a CPU; 5 experiences of 2 classes, as in van de Ven et al. 2020 / Hsu et al. 2018).
- split-cifar / split-cifar100: the reduced ResNet-18 with SGD lr 0.03, one epoch, small batches, as in
  GEM / A-GEM (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2019); meant for a GPU. On a CPU, pass
  `--backbone cnn` for a quick look.
"""

from __future__ import annotations

import torch

from hywu_bench.config import RunSpec
from hywu_bench.data import ExperienceInfo, ExperienceTensors, Scenario, ScenarioInfo, make_scenario
from hywu_bench.errors import UserError
from scenarios.catalog import SplitOptions
from scenarios.datasets import TensorData, load_dataset


def class_order(n_classes: int, seed: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n_classes))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_classes, generator=g).tolist()


def split_scenario(name: str, data: TensorData, spec: RunSpec, options: SplitOptions,
                   recommended: dict) -> Scenario:
    n, k = data.n_classes, options.n_experiences
    if k < 1 or n % k:
        valid = ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
        raise UserError(f"{name}: n_experiences={k} must divide the {n} classes evenly; use one of {valid}.")
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


def build_split(spec: RunSpec, options: SplitOptions, *, name: str, dataset: str, recommended: dict) -> Scenario:
    """`split-<dataset>` (declared in scenarios/catalog.py)."""
    return split_scenario(name, load_dataset(dataset, spec.data_root, spec.download), spec, options, recommended)
