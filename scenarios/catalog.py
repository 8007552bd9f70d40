"""The shipped scenarios: names, help, settings, options and families, light (no torch), so that `list`,
`--help` and every validation error answer at once. Each entry names its builder by reference; the
builder's module (split.py, drift.py, personalization.py, sequence.py) is imported when a run starts.

A scenario's family (`split`, `permuted`, `rotated`, `drift`, `preference`, `inverse`, `mixed`,
`sequence`) is what strategies key their tuned options by (e.g. `strategies/hywu/options.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hywu_bench.registry import SCENARIOS, did_you_mean

# ---------------------------------------------------------------------------------------------------
# split-<dataset> (split.py)

@dataclass(frozen=True)
class SplitOptions:
    n_experiences: int = 5  # groups of n_classes / n_experiences classes each
    setting: Literal["class", "task"] = "class"  # task: the task label is given at test time
    shuffle_classes: bool = True  # shuffle the class order with the run's seed


@dataclass(frozen=True)
class SplitCifar100Options(SplitOptions):
    n_experiences: int = 10  # 10 experiences of 10 classes, or 20 of 5 (the GEM / A-GEM protocol)

    def __post_init__(self) -> None:
        if self.n_experiences not in (10, 20):
            raise ValueError(f"n_experiences={self.n_experiences} is not supported; use 10 (10 classes each) "
                             f"or 20 (5 classes each).")


_SPLITS = [  # name, dataset, help, recommended hyperparameters, aliases, options
    ("split-digits", "digits", "scikit-learn's bundled 8x8 digits in 5 experiences of 2 classes (no download; the "
     "default)", dict(epochs=10, batch_size=32, lr=0.05), (), SplitOptions),
    ("split-mnist", "mnist", "MNIST in 5 experiences of 2 classes (idx files under <data-root>/MNIST/raw, or "
     "--download)", dict(epochs=1, batch_size=64, lr=0.03, backbone="mlp"), (), SplitOptions),
    ("split-fmnist", "fashion-mnist", "Fashion-MNIST in 5 experiences of 2 classes (<data-root>/FashionMNIST/raw, "
     "Debian's dataset-fashion-mnist, or --download)", dict(epochs=2, batch_size=64, lr=0.03, backbone="mlp"),
     ("split-fashion-mnist",), SplitOptions),
    ("split-cifar", "cifar10", "CIFAR-10 in 5 experiences of 2 classes (<data-root>/cifar-10-batches-py, or "
     "--download); reduced ResNet-18, best on a GPU", dict(epochs=1, batch_size=32, lr=0.03, backbone="resnet18"),
     ("split-cifar10",), SplitOptions),
    ("split-cifar100", "cifar100", "CIFAR-100 in 10 experiences of 10 classes, or 20 of 5 (<data-root>/"
     "cifar-100-python, or --download); reduced ResNet-18, best on a GPU",
     dict(epochs=1, batch_size=32, lr=0.03, backbone="resnet18"), (), SplitCifar100Options),
]
for _name, _dataset, _help, _recommended, _aliases, _options in _SPLITS:
    SCENARIOS.register(_name, help=_help, settings=("class", "task"), options=_options, aliases=_aliases,
                       builder="scenarios.split:build_split", family="split",
                       bind=dict(name=_name, dataset=_dataset, recommended=_recommended))


# ---------------------------------------------------------------------------------------------------
# permuted-, rotated-, drift-<dataset> (drift.py), preference-, inverse-<dataset> (personalization.py)

@dataclass(frozen=True)
class Profile:
    """A dataset as the drift and personalization streams use it on a CPU by default."""

    dataset: str  # the name load_dataset knows
    train: int  # train images per experience by default (0: all)
    test: int  # test images per experience by default (0: all)
    recommended: dict  # epochs, batch_size, lr, backbone
    aliases: tuple[str, ...] = ()  # extra scenario-name suffixes


# Plain SGD at lr 0.1 learns Fashion-MNIST a little faster, but EWC (lambda 100) diverged there; 0.05 is safe.
_MLP28 = dict(epochs=5, batch_size=32, lr=0.05, backbone="mlp")  # about 0.7 on 2,000 Fashion-MNIST images
PROFILES: dict[str, Profile] = {
    "digits": Profile("digits", 0, 0, dict(epochs=10, batch_size=32, lr=0.05, backbone="mlp")),
    "mnist": Profile("mnist", 2000, 1000, _MLP28),
    "fmnist": Profile("fashion-mnist", 2000, 1000, _MLP28, aliases=("fashion-mnist",)),
    "cifar10": Profile("cifar10", 2000, 1000, dict(epochs=3, batch_size=32, lr=0.05, backbone="cnn")),
    "cifar100": Profile("cifar100", 2000, 1000, dict(epochs=3, batch_size=32, lr=0.05, backbone="cnn")),
}


@dataclass(frozen=True)
class StreamOptions:
    train_per_experience: int | None = None  # None: the dataset's CPU default (all of digits, else 2000); 0: all
    test_per_experience: int | None = None  # None: the dataset's CPU default (all of digits, else 1000); 0: all

    def __post_init__(self) -> None:
        for key in ("train_per_experience", "test_per_experience"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{key} must be >= 0 (got {value}); 0 takes every image")


@dataclass(frozen=True)
class PermutedOptions(StreamOptions):
    n_experiences: int = 5  # experience 0 is the identity
    setting: Literal["domain", "task"] = "domain"  # task: each experience has its own task label

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_experiences < 1:
            raise ValueError(f"n_experiences must be >= 1 (got {self.n_experiences})")


@dataclass(frozen=True)
class RotatedOptions(StreamOptions):
    angles: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0)  # degrees, counter-clockwise; one experience each
    setting: Literal["domain", "task"] = "domain"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.angles:
            raise ValueError("angles must name at least one angle, e.g. angles=[0,45,90]")


DRIFT_STRENGTH = {"rotate": 90.0, "blur": 2.0, "contrast": 0.9, "noise": 0.5}  # the level at the last experience


@dataclass(frozen=True)
class DriftOptions(StreamOptions):
    transform: Literal["rotate", "blur", "contrast", "noise"] = "rotate"  # what drifts
    strength: float | None = None  # level at the last experience; None: rotate 90 deg, blur sigma 2, contrast 0.9,
    #                                noise 0.5
    schedule: Literal["linear", "cosine"] = "linear"  # how the level rises from 0
    n_experiences: int = 10
    setting: Literal["domain", "task"] = "domain"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_experiences < 1:
            raise ValueError(f"n_experiences must be >= 1 (got {self.n_experiences})")
        if self.strength is not None and self.strength < 0:
            raise ValueError(f"strength must be >= 0 (got {self.strength})")
        if self.transform == "contrast" and (self.strength or 0) > 1:
            raise ValueError(f"contrast strength is the contrast lost, at most 1 (got {self.strength})")


@dataclass(frozen=True)
class PreferenceOptions(StreamOptions):
    n_users: int = 4  # one experience per user
    same_images: bool = True  # every user labels the same training images (else a fresh subsample each)
    user_in_input: bool = True  # also encode the user as an extra input channel, for plain baselines

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_users < 1:
            raise ValueError(f"n_users must be >= 1 (got {self.n_users})")


@dataclass(frozen=True)
class InverseOptions(StreamOptions):
    n_pairs: int = 2  # 2 users per pair: y -> pi(y) and y -> n-1-pi(y)
    same_images: bool = True
    user_in_input: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1 (got {self.n_pairs})")


_STREAMS = [  # family, options, builder, help
    ("permuted", PermutedOptions, "scenarios.drift:build_permuted",
     "{dataset}, experience k under a fixed seeded pixel permutation (k = 0: identity); domain-incremental"),
    ("rotated", RotatedOptions, "scenarios.drift:build_rotated",
     "{dataset}, experience k rotated by angles[k] degrees; domain-incremental"),
    ("drift", DriftOptions, "scenarios.drift:build_drift",
     "{dataset} under gradual drift (rotation, blur, contrast or noise rising over the experiences); "
     "domain-incremental"),
    ("preference", PreferenceOptions, "scenarios.personalization:build_preference",
     "{dataset}, each experience a user with a seeded permutation of the labels and a condition token (also an "
     "input channel); domain-incremental"),
    ("inverse", InverseOptions, "scenarios.personalization:build_inverse",
     "{dataset}, pairs of users with opposed labels (y vs n-1-y) and condition tokens (also an input channel); "
     "domain-incremental"),
]
for _family, _options, _builder, _help in _STREAMS:
    for _key, _profile in PROFILES.items():
        _settings = ("domain",) if _family in ("preference", "inverse") else ("domain", "task")
        SCENARIOS.register(f"{_family}-{_key}", help=_help.format(dataset=_profile.dataset), settings=_settings,
                           options=_options, aliases=tuple(f"{_family}-{a}" for a in _profile.aliases),
                           builder=_builder, family=_family, bind=dict(name=f"{_family}-{_key}", profile=_profile))


# ---------------------------------------------------------------------------------------------------
# mixed, sequence (sequence.py)

@dataclass(frozen=True)
class MixedOptions:
    datasets: tuple[str, ...] = ("digits", "fashion-mnist")  # in stream order
    experiences_per_dataset: int = 1  # each dataset's classes cut into this many groups
    size: int = 0  # common image side; 0: the largest of the datasets
    setting: Literal["class", "task"] = "class"  # task: each experience has its own task label
    train_per_experience: int = 2000  # 0: all
    test_per_experience: int = 1000  # 0: all

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must name at least one dataset")
        from scenarios.datasets import ALIASES, LOADERS  # imports torch: only when `mixed` is chosen

        for name in self.datasets:
            if ALIASES.get(name, name) not in LOADERS:
                valid = sorted(LOADERS) + sorted(ALIASES)
                raise ValueError(f"unknown dataset '{name}'.{did_you_mean(name, valid)} Valid: {', '.join(valid)}.")
        if self.experiences_per_dataset < 1 or self.size < 0:
            raise ValueError("experiences_per_dataset must be >= 1 and size >= 0")
        if self.train_per_experience < 0 or self.test_per_experience < 0:
            raise ValueError("train_per_experience and test_per_experience must be >= 0 (0: all)")


@dataclass(frozen=True)
class SequenceOptions:
    path: str = ""  # the TOML file declaring the experiences (checked when the options are resolved)

    def __post_init__(self) -> None:
        if self.path:  # fail before any data is loaded (imports torch: only when `sequence` is chosen)
            from scenarios.sequence_file import load_sequence

            load_sequence(self.path)


SCENARIOS.register("mixed", settings=("class", "task"), options=MixedOptions, builder="scenarios.sequence:build_mixed",
                   family="mixed", help="the experiences of several datasets in turn (default digits, then "
                   "Fashion-MNIST), resized to a common shape, each dataset on its own outputs")
SCENARIOS.register("sequence", settings=("class", "domain", "task"), options=SequenceOptions,
                   builder="scenarios.sequence:build_sequence", family="sequence",
                   help="a stream declared in a TOML file: datasets, class subsets, transforms, users and label maps "
                        "per experience (--set scenario.path=FILE; examples in scenarios/examples/)")
