"""Offline-first dataset loading to tensors.

Every loader returns a `TensorData`: float32 images in [0, 1] shaped (N, C, H, W) and int64 labels, with
the dataset's own train/test split. Nothing is fetched from the network unless `download=True`.

- `digits`: scikit-learn's bundled 8x8 digits (1,797 images; a fixed stratified 70/30 split).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hywu_bench.errors import UserError


@dataclass(frozen=True)
class TensorData:
    name: str
    x_train: Tensor  # (N, C, H, W) float32 in [0, 1]
    y_train: Tensor  # (N,) int64
    x_test: Tensor
    y_test: Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def default_data_root() -> Path:
    env = os.environ.get("HYWU_BENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hywu-bench" / "data"


def load_digits() -> TensorData:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return TensorData("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr),
                      torch.from_numpy(x_te), torch.from_numpy(y_te), 10)


LOADERS = {"digits": lambda root, download: load_digits()}
ALIASES = {}


def load_dataset(name: str, data_root: str | Path | None = None, download: bool = False) -> TensorData:
    key = ALIASES.get(name, name)
    if key not in LOADERS:
        raise UserError(f"unknown dataset '{name}'; valid: {', '.join(sorted(LOADERS))}.")
    root = Path(data_root).expanduser() if data_root else default_data_root()
    return LOADERS[key](root, download)
