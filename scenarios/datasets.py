"""Offline-first dataset loading to tensors.

Every loader returns a `TensorData`: float32 images in [0, 1] shaped (N, C, H, W) and int64 labels, with
the dataset's own train/test split. Nothing is fetched from the network unless `download=True`, and then
only through torchvision's dataset classes, into the same folders the offline loaders read.

- `digits`: scikit-learn's bundled 8x8 digits (1,797 images; a fixed stratified 70/30 split).
- `mnist`, `fashion-mnist` (alias `fmnist`): the idx files (`train-images-idx3-ubyte[.gz]`, ...) in
  `<data-root>/MNIST/raw` and `<data-root>/FashionMNIST/raw` (torchvision's layout), gzipped or not.
  Fashion-MNIST is also read from Debian's `dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`).
- `cifar10`, `cifar100`: the python pickles in `<data-root>/cifar-10-batches-py` and
  `<data-root>/cifar-100-python` (the CIFAR authors' format, which torchvision downloads); fine labels for 100.

The idx and pickle files are decoded here with numpy (LeCun et al.'s idx format: a magic number giving
the element type and rank, then big-endian int32 sizes, then the raw bytes). A file of the wrong size or an
unreadable archive is reported as a `DataNotFoundError` naming the file, never as a numpy traceback.
Decoded datasets are cached per process on (name, data root), so a compare of many runs decodes once.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from hywu_bench.errors import DataNotFoundError, UserError

log = logging.getLogger(__name__)

# Debian/Ubuntu's `apt-get install dataset-fashion-mnist` puts the gzipped idx files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_UBYTE = 0x08  # the only element type MNIST-style files use


@dataclass(frozen=True)
class TensorData:
    """A decoded dataset. Loaded datasets are cached and shared: callers must not modify these tensors
    in place (index or clone them instead)."""

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


def _to_tensors(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                n_classes: int) -> TensorData:
    """uint8 images (N, C, H, W) and integer labels -> float32 in [0, 1] and int64."""
    def images(x: np.ndarray) -> Tensor:
        return torch.from_numpy(x.astype(np.float32) / np.float32(255.0))  # (N, C, H, W)

    def labels(y: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))  # (N,)

    return TensorData(name, images(x_train), labels(y_train), images(x_test), labels(y_test), n_classes)


def load_digits() -> TensorData:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return TensorData("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr),
                      torch.from_numpy(x_te), torch.from_numpy(y_te), 10)


# ---------------------------------------------------------------------------------------------------
# idx files (MNIST, Fashion-MNIST)

def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (gzipped if its name ends in .gz) as a uint8 array of the shape its header gives."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataNotFoundError(f"cannot read '{path}' ({err}); the file is corrupt or truncated: "
                                f"delete it and fetch it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DataNotFoundError(f"'{path}' is not an idx file of {ndim}-d unsigned bytes (bad magic number "
                                f"{raw[:4].hex() or 'empty'}); replace it with the original file.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataNotFoundError(f"'{path}' is truncated ({len(raw)} bytes, shorter than its header); "
                                f"delete it and fetch it again.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataNotFoundError(f"'{path}' has {len(raw)} bytes but its header {dims} needs {expected}; "
                                f"the file is truncated or corrupt: delete it and fetch it again.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path) -> dict[str, Path] | None:
    """The four idx files in `folder` (each plain or .gz, plain preferred), or None if any is missing."""
    found = {}
    for stem in IDX_FILES:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            return None
        found[stem] = hit
    return found


def _idx_pair(images_path: Path, labels_path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images_path, ndim=3)  # (N, H, W)
    y = read_idx(labels_path, ndim=1)  # (N,)
    if x.shape[0] != y.shape[0]:
        raise DataNotFoundError(f"'{images_path}' has {x.shape[0]} images but '{labels_path}' has {y.shape[0]} "
                                f"labels; the files do not belong together: fetch both again.")
    if y.size and int(y.max()) >= n_classes:
        raise DataNotFoundError(f"'{labels_path}' has label {int(y.max())}, outside 0..{n_classes - 1}; "
                                f"it is not this dataset's label file.")
    return x[:, None], y  # (N, 1, H, W), (N,)


def load_idx_dataset(name: str, folders: list[Path], hint: str) -> TensorData:
    """An MNIST-style dataset from the first of `folders` holding all four idx files."""
    for folder in folders:
        files = _find_idx(folder)
        if files is not None:
            log.debug("loading %s from %s", name, folder)
            x_tr, y_tr = _idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]], 10)
            x_te, y_te = _idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]], 10)
            return _to_tensors(name, x_tr, y_tr, x_te, y_te, 10)
    where = " or ".join(f"'{f}'" for f in folders)
    raise DataNotFoundError(f"{name}: the idx files {', '.join(f'{s}[.gz]' for s in IDX_FILES)} were not all "
                            f"found in {where}; {hint}")


def load_mnist(root: Path) -> TensorData:
    folder = root / "MNIST" / "raw"
    return load_idx_dataset("mnist", [folder],
                            f"run with --download on a networked machine, or copy them to '{folder}'.")


def load_fashion_mnist(root: Path) -> TensorData:
    folder = root / "FashionMNIST" / "raw"
    hint = (f"run with --download on a networked machine, copy them to '{folder}', "
            f"or `apt-get install dataset-fashion-mnist` (files in '{DEBIAN_FASHION_MNIST}').")
    return load_idx_dataset("fashion-mnist", [folder, DEBIAN_FASHION_MNIST], hint)


# ---------------------------------------------------------------------------------------------------
# CIFAR pickles

def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray, bytes]:
    """One CIFAR python pickle: uint8 images (N, 3, 32, 32), labels (N,) and its batch_label (b"" if none)."""
    try:
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(_field(batch, "data"), dtype=np.uint8)  # (N, 3072): R, G, B planes of 32x32
        labels = np.asarray(_field(batch, label_key), dtype=np.int64)  # (N,)
        name = batch.get(b"batch_label", batch.get("batch_label", b""))
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise DataNotFoundError(f"cannot read CIFAR batch '{path}' ({type(err).__name__}: {err}); the file is "
                                f"corrupt or truncated: delete it and fetch it again.") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataNotFoundError(f"CIFAR batch '{path}' has data of shape {data.shape} and {labels.shape[0]} "
                                f"labels, expected (N, 3072) and N; replace it with the original file.")
    return data.reshape(-1, 3, 32, 32), labels, name if isinstance(name, bytes) else str(name).encode()


def _field(batch: Any, key: str) -> Any:
    if not isinstance(batch, dict):
        raise TypeError(f"expected a dict, found {type(batch).__name__}")
    if key.encode() in batch:
        return batch[key.encode()]
    return batch[key]  # a re-pickled file with str keys


def load_cifar(name: str, folder: Path, train: list[str], test: list[str], label_key: str,
               n_classes: int) -> TensorData:
    missing = [f for f in train + test if not (folder / f).is_file()]
    if missing:
        raise DataNotFoundError(f"{name}: {', '.join(missing)} not found in '{folder}'; run with --download on a "
                                f"networked machine, or copy the python-version files to that folder.")
    test_batches = [read_cifar_batch(folder / f, label_key) for f in test]
    if b"stand-in" in test_batches[0][2]:  # written by benchmarks/cifar_standin.py: other images in CIFAR's format
        log.warning("%s in '%s' is a stand-in (its %s says so): its numbers are not %s's; label them so.",
                    name, folder, test[0], name)
    x_tr, y_tr = _concat([read_cifar_batch(folder / f, label_key) for f in train])  # (50000, 3, 32, 32)
    x_te, y_te = _concat(test_batches)  # (10000, 3, 32, 32)
    for labels, split in ((y_tr, "train"), (y_te, "test")):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise DataNotFoundError(f"{name}: {split} labels in '{folder}' fall outside 0..{n_classes - 1}; "
                                    f"the files are not {name}'s.")
    return _to_tensors(name, x_tr, y_tr, x_te, y_te, n_classes)


def _concat(batches: list[tuple[np.ndarray, np.ndarray, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load_cifar10(root: Path) -> TensorData:
    return load_cifar("cifar10", root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                      ["test_batch"], "labels", 10)


def load_cifar100(root: Path) -> TensorData:
    return load_cifar("cifar100", root / "cifar-100-python", ["train"], ["test"], "fine_labels", 100)


# ---------------------------------------------------------------------------------------------------
# Fetching with torchvision, and the registry of loaders

def torchvision_fetcher(class_name: str) -> Callable[[Path], None]:
    """Fetch a dataset into `root` with torchvision's class of that name (train and test)."""
    def fetch(root: Path) -> None:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, class_name)
        log.info("downloading %s into %s with torchvision", class_name, root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for train in (True, False):
                cls(str(root), train=train, download=True)
        except Exception as err:  # no network, a proxy, a full disk: one line for the user
            message = " ".join(str(err).split())[:300] or type(err).__name__  # torchvision's are multi-line
            raise DataNotFoundError(f"downloading {class_name} into '{root}' failed ({message}); run on a machine "
                                    f"with network access, or copy the files there by hand.") from None

    return fetch


@dataclass(frozen=True)
class Loader:
    """How to decode a dataset from a data root, and (optionally) how to fetch it there first."""

    load: Callable[[Path], TensorData]
    fetch: Callable[[Path], None] | None = None

    def __call__(self, root: Path, download: bool = False) -> TensorData:
        try:
            return self.load(root)
        except DataNotFoundError:
            if not download or self.fetch is None:
                raise
        self.fetch(root)
        return self.load(root)


LOADERS: dict[str, Callable[[Path, bool], TensorData]] = {
    "digits": Loader(lambda root: load_digits()),
    "mnist": Loader(load_mnist, torchvision_fetcher("MNIST")),
    "fashion-mnist": Loader(load_fashion_mnist, torchvision_fetcher("FashionMNIST")),
    "cifar10": Loader(load_cifar10, torchvision_fetcher("CIFAR10")),
    "cifar100": Loader(load_cifar100, torchvision_fetcher("CIFAR100")),
}
ALIASES = {"fmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def load_dataset(name: str, data_root: str | Path | None = None, download: bool = False) -> TensorData:
    """The dataset `name` from `data_root` (default: $HYWU_BENCH_DATA or the user cache folder).

    Decoded once per (name, resolved root) in a process and shared: do not modify the returned tensors.
    `download=True` fetches missing files with torchvision first (needs a network).
    """
    key = ALIASES.get(name, name)
    if key not in LOADERS:
        valid = sorted(LOADERS) + sorted(ALIASES)
        raise UserError(f"unknown dataset '{name}'; valid: {', '.join(valid)}.")
    root = (Path(data_root).expanduser() if data_root else default_data_root()).resolve()
    try:
        return _load_cached(key, str(root))
    except DataNotFoundError:
        if not download:
            raise
    loader = LOADERS[key]
    fetch = getattr(loader, "fetch", None)
    if fetch is None:  # a plugin's plain loader function: it handles download itself, uncached
        return loader(root, True)
    fetch(root)
    return _load_cached(key, str(root))


@functools.lru_cache(maxsize=4)  # CIFAR-100 as float32 is ~740 MB: keep only a few datasets alive
def _load_cached(key: str, root: str) -> TensorData:
    return LOADERS[key](Path(root), False)


def clear_cache() -> None:
    """Forget decoded datasets (tests, or after replacing files on disk)."""
    _load_cached.cache_clear()
