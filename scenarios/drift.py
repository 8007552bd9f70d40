"""Domain-incremental streams: the same classes every experience, the input distribution moves.

One scenario per dataset (digits, mnist, fmnist, cifar10, cifar100), e.g. `permuted-fmnist`:

- `permuted-<dataset>`: experience k applies a fixed pixel permutation drawn from the run seed (k = 0 is
  the identity), as in permuted MNIST (Goodfellow et al. 2013; Kirkpatrick et al. 2017).
- `rotated-<dataset>`: experience k rotates every image by `angles[k]` degrees (Lopez-Paz & Ranzato 2017).
- `drift-<dataset>`: gradual covariate drift. A level rises from 0 at the first experience to `strength`
  at the last along `schedule` (linear or cosine), and sets one transform: rotation angle, blur sigma,
  contrast loss (factor 1 - level) or noise std. Many small experiences (`n_experiences=50`,
  `train_per_experience=100`) make an online-like stream.

All three are domain-incremental (one head, no task label); `setting=task` gives each experience its
task label instead. Train images are a fresh seeded subsample per experience; the test images are the
same subsample in every experience, so a column of R differs only by the transform. By default the
streams are small enough for two CPU cores: all of digits, 2,000 train / 1,000 test images per
experience of the others (`train_per_experience=0` / `test_per_experience=0` take everything).

The helpers here (`PROFILES`, `subsample`, `StreamOptions`) are shared by the personalization and
sequence modules.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hywu_bench.config import RunSpec
from hywu_bench.data import ExperienceInfo, ExperienceTensors, Scenario, ScenarioInfo, make_scenario
from scenarios import transforms as T
from scenarios.catalog import DRIFT_STRENGTH, DriftOptions, PermutedOptions, Profile, RotatedOptions, StreamOptions
from scenarios.datasets import TensorData, load_dataset


def sizes(profile: Profile, options: StreamOptions) -> tuple[int, int]:
    train = profile.train if options.train_per_experience is None else options.train_per_experience
    test = profile.test if options.test_per_experience is None else options.test_per_experience
    return train, test


def subsample(x: Tensor, y: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """`n` images drawn without replacement (all of them, in a seeded order, when n is 0 or too large)."""
    order = torch.randperm(y.shape[0], generator=gen)
    if 0 < n < y.shape[0]:
        order = order[:n].sort().values
    return x[order], y[order]


def schedule_levels(n: int, strength: float, schedule: str) -> list[float]:
    """Levels from 0 (first experience) to `strength` (last)."""
    if n == 1:
        return [0.0]
    t = [k / (n - 1) for k in range(n)]
    if schedule == "cosine":  # slow start and end, fastest drift in the middle
        t = [(1 - math.cos(math.pi * s)) / 2 for s in t]
    return [strength * s for s in t]


ExperienceTransform = tuple[str, Callable[[Tensor, str], Tensor]]  # (description, fn(x, split) -> x)


def domain_scenario(name: str, data: TensorData, spec: RunSpec, options: StreamOptions, profile: Profile,
                    transforms: list[ExperienceTransform], setting: str, extra: dict) -> Scenario:
    """One experience per transform, over every class of `data`."""
    n_train, n_test = sizes(profile, options)
    x_test, y_test = subsample(data.x_test, data.y_test, n_test, T.generator(spec.seed, name, "test"))
    classes = tuple(range(data.n_classes))
    train, test, infos = [], [], []
    for k, (describe, fn) in enumerate(transforms):
        task = k if setting == "task" else 0
        x_tr, y_tr = subsample(data.x_train, data.y_train, n_train, T.generator(spec.seed, name, "train", k))
        train.append(ExperienceTensors(fn(x_tr, "train"), y_tr, task))
        test.append(ExperienceTensors(fn(x_test, "test"), y_test.clone(), task))
        infos.append(ExperienceInfo(k, classes, data.name, describe, n_train=len(y_tr), n_test=len(y_test)))
    info = ScenarioInfo(name, setting, data.n_classes, data.input_shape, tuple(infos),
                        recommended=dict(profile.recommended), options={**vars(options), **extra})
    return make_scenario(train, test, info)


# ---------------------------------------------------------------------------------------------------
# permuted-, rotated-, drift-<dataset>



def permutations(n: int, h: int, w: int, seed: int) -> list[Tensor]:
    """Experience k's pixel order: the identity for k = 0, then seeded permutations."""
    return [torch.arange(h * w)] + [T.pixel_permutation(h, w, seed * 7919 + k) for k in range(1, n)]


def build_permuted(spec: RunSpec, options: PermutedOptions, *, name: str, profile: Profile) -> Scenario:
    data = load_dataset(profile.dataset, spec.data_root, spec.download)
    _, h, w = data.input_shape
    perms = permutations(options.n_experiences, h, w, spec.seed)
    transforms = [("identity" if k == 0 else f"permute({k})", lambda x, split, p=p: T.permute_pixels(x, p))
                  for k, p in enumerate(perms)]
    return domain_scenario(name, data, spec, options, profile, transforms, options.setting, {})


def build_rotated(spec: RunSpec, options: RotatedOptions, *, name: str, profile: Profile) -> Scenario:
    data = load_dataset(profile.dataset, spec.data_root, spec.download)
    transforms = [(f"rotate({a:g})", lambda x, split, a=a: T.rotate(x, a)) for a in options.angles]
    return domain_scenario(name, data, spec, options, profile, transforms, options.setting, {})




def drift_transform(kind: str, level: float, seed: int, k: int) -> ExperienceTransform:
    if kind == "rotate":
        return f"rotate({level:.3g})", lambda x, split: T.rotate(x, level)
    if kind == "blur":
        return f"blur({level:.3g})", lambda x, split: T.gaussian_blur(x, level)
    if kind == "contrast":
        return f"contrast({1 - level:.3g})", lambda x, split: T.adjust_contrast(x, 1 - level)
    return f"noise({level:.3g})", lambda x, split: T.add_noise(x, level, seed * 7919 + k * 2 + (split == "test"))


def build_drift(spec: RunSpec, options: DriftOptions, *, name: str, profile: Profile) -> Scenario:
    data = load_dataset(profile.dataset, spec.data_root, spec.download)
    strength = DRIFT_STRENGTH[options.transform] if options.strength is None else options.strength
    levels = schedule_levels(options.n_experiences, strength, options.schedule)
    transforms = [drift_transform(options.transform, level, spec.seed, k) for k, level in enumerate(levels)]
    return domain_scenario(name, data, spec, options, profile, transforms, options.setting,
                           {"strength": strength, "levels": levels})
