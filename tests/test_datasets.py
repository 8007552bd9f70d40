"""The offline loaders read the real on-disk formats exactly: idx files (plain and gzipped) in torchvision's
layout, Debian's Fashion-MNIST package, CIFAR-10/100 python pickles; missing and truncated files are
one-line `DataNotFoundError`s naming the path; `download=True` goes through torchvision's classes."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hywu_bench.errors import DataNotFoundError, UserError
from scenarios import datasets
from scenarios.datasets import IDX_FILES, load_dataset


@pytest.fixture(autouse=True)
def _fresh_cache():
    datasets.clear_cache()
    yield
    datasets.clear_cache()


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file: magic (0, 0, 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def fabricate_idx(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        IDX_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_FILES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), array)
    return arrays


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump({b"batch_label": b"fabricated", label_key: labels, b"data": data}, fh, protocol=2)


def fabricate_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        write_cifar_batch(folder / name, data, labels, b"labels")
        xs.append(data)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def expected_images(raw: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(raw).float() / 255


def test_mnist_gz_files_load_exactly(tmp_path):
    arrays = fabricate_idx(tmp_path / "MNIST" / "raw", gz=True)
    data = load_dataset("mnist", tmp_path)
    assert data.name == "mnist" and data.n_classes == 10 and data.input_shape == (1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert torch.equal(data.x_train[:, 0], expected_images(arrays[IDX_FILES[0]]))
    assert torch.equal(data.x_test[:, 0], expected_images(arrays[IDX_FILES[2]]))
    assert data.y_train.tolist() == arrays[IDX_FILES[1]].tolist()
    assert data.y_test.tolist() == arrays[IDX_FILES[3]].tolist()
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0


def test_plain_idx_files_and_fmnist_alias(tmp_path):
    arrays = fabricate_idx(tmp_path / "FashionMNIST" / "raw", gz=False, seed=3)
    data = load_dataset("fmnist", tmp_path)
    assert data.name == "fashion-mnist"
    assert torch.equal(data.x_train[:, 0], expected_images(arrays[IDX_FILES[0]]))
    assert data.y_test.tolist() == arrays[IDX_FILES[3]].tolist()


def test_fashion_mnist_falls_back_to_the_debian_folder(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share"
    arrays = fabricate_idx(debian, gz=True, seed=5)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", debian)
    data = load_dataset("fashion-mnist", tmp_path / "empty-root")
    assert torch.equal(data.x_test[:, 0], expected_images(arrays[IDX_FILES[2]]))
    # Files under the data root win over the system package.
    mine = fabricate_idx(tmp_path / "root" / "FashionMNIST" / "raw", seed=6)
    data = load_dataset("fashion-mnist", tmp_path / "root")
    assert torch.equal(data.x_test[:, 0], expected_images(mine[IDX_FILES[2]]))


def test_debian_fashion_mnist_package_loads(tmp_path, fashion_mnist):
    data = load_dataset("fashion-mnist", tmp_path)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert sorted(data.y_train.unique().tolist()) == list(range(10))
    assert data.y_train.bincount().tolist() == [6000] * 10


def test_missing_files_name_the_folder_and_the_fix(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "--download" in message
    assert "train-images-idx3-ubyte" in message and "\n" not in message

    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-package")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", tmp_path)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(err.value)


def test_partial_idx_folder_is_missing(tmp_path):
    fabricate_idx(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / f"{IDX_FILES[3]}.gz").unlink()
    with pytest.raises(DataNotFoundError, match="not all found"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_is_named(tmp_path, gz):
    fabricate_idx(tmp_path / "MNIST" / "raw", gz=gz)
    path = tmp_path / "MNIST" / "raw" / (IDX_FILES[0] + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_idx_with_a_bad_magic_number_is_named(tmp_path):
    fabricate_idx(tmp_path / "MNIST" / "raw", gz=False)
    path = tmp_path / "MNIST" / "raw" / IDX_FILES[1]
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])  # float32 elements, not ubyte
    with pytest.raises(DataNotFoundError, match="magic number") as err:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(err.value)


def test_cifar10_pickles_load_exactly(tmp_path):
    x, y = fabricate_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.input_shape == (3, 32, 32) and data.n_classes == 10
    assert data.y_train.tolist() == y[:20].tolist() and data.y_test.tolist() == y[20:].tolist()
    # A row is the R, G, B planes, each 32x32 row-major: pixel (c, h, w) is column c*1024 + h*32 + w.
    assert float(data.x_train[3, 1, 2, 5]) == pytest.approx(x[3, 1024 + 2 * 32 + 5] / 255)
    assert torch.equal(data.x_train, expected_images(x[:20]).reshape(20, 3, 32, 32))
    assert torch.equal(data.x_test, expected_images(x[20:]).reshape(4, 3, 32, 32))


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    x_tr = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    x_te = rng.integers(0, 256, (100, 3072), dtype=np.uint8)
    for name, x in (("train", x_tr), ("test", x_te)):
        folder.mkdir(exist_ok=True)
        batch = {b"data": x, b"fine_labels": [i % 100 for i in range(len(x))],
                 b"coarse_labels": [i % 20 for i in range(len(x))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    data = load_dataset("cifar100", tmp_path)
    assert data.n_classes == 100 and data.x_train.shape == (200, 3, 32, 32) and data.x_test.shape == (100, 3, 32, 32)
    assert data.y_train.tolist() == [i % 100 for i in range(200)]
    assert torch.equal(data.x_test, expected_images(x_te).reshape(100, 3, 32, 32))


def test_cifar_missing_and_truncated_batches_are_named(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value) and "data_batch_1" in str(err.value)
    fabricate_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_decoded_data_is_cached_per_name_and_root(tmp_path):
    fabricate_idx(tmp_path / "a" / "MNIST" / "raw", seed=1)
    fabricate_idx(tmp_path / "b" / "MNIST" / "raw", seed=2)
    first = load_dataset("mnist", tmp_path / "a")
    assert load_dataset("mnist", str(tmp_path / "a" / ".." / "a")) is first  # same resolved root
    assert load_dataset("mnist", tmp_path / "b") is not first


def test_default_root_is_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HYWU_BENCH_DATA", str(tmp_path / "env-root"))
    fabricate_idx(tmp_path / "env-root" / "MNIST" / "raw")
    assert load_dataset("mnist").x_train.shape[0] == 20


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError, match="valid: .*mnist"):
        load_dataset("mnsit")


class _FakeTorchvisionMNIST:
    """Stands in for torchvision.datasets.MNIST: 'downloads' by writing idx files where torchvision would."""

    calls: list = []

    def __init__(self, root, train=True, download=False):
        _FakeTorchvisionMNIST.calls.append((root, train, download))
        fabricate_idx(Path(root) / "MNIST" / "raw", gz=False, seed=9)


def test_download_fetches_with_torchvision_then_loads(tmp_path, monkeypatch):
    import torchvision.datasets

    _FakeTorchvisionMNIST.calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", _FakeTorchvisionMNIST)
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", tmp_path, download=False)
    data = load_dataset("mnist", tmp_path, download=True)
    assert data.x_train.shape == (20, 1, 28, 28)
    assert {(train, download) for _, train, download in _FakeTorchvisionMNIST.calls} == {(True, True), (False, True)}
    assert all(Path(root) == tmp_path.resolve() for root, _, _ in _FakeTorchvisionMNIST.calls)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, train=True, download=False):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: <urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="downloading CIFAR10 .* failed") as err:
        load_dataset("cifar10", tmp_path, download=True)
    assert "\n" not in str(err.value) and str(tmp_path.resolve()) in str(err.value)


def test_the_cifar_standin_script_writes_cifar_pickles_that_load_and_say_what_they_are(tmp_path, caplog):
    import subprocess
    import sys

    source = tmp_path / "fmnist"
    arrays = fabricate_idx(source, n_train=20, n_test=10)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cifar_standin.py"
    command = [sys.executable, str(script), "--out", str(tmp_path / "standin"), "--source", str(source)]
    subprocess.run(command, check=True, capture_output=True)
    with caplog.at_level("WARNING", logger="scenarios.datasets"):
        data = load_dataset("cifar10", tmp_path / "standin")
    assert "is a stand-in" in caplog.text and "not cifar10's" in caplog.text
    assert data.x_train.shape == (20, 3, 32, 32) and data.y_test.tolist() == arrays[IDX_FILES[3]].tolist()
    image = torch.from_numpy(arrays[IDX_FILES[0]][7].astype(np.float32) / 255)
    assert torch.equal(data.x_train[7, 2, 2:30, 2:30], image) and data.x_train[7, :, :2].abs().sum() == 0
    assert torch.equal(data.x_train[7, 0], data.x_train[7, 1])  # the three planes are the same image
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr and "nothing was overwritten" in again.stderr
    caplog.clear()
    fabricate_cifar10(tmp_path / "real")
    datasets.clear_cache()
    load_dataset("cifar10", tmp_path / "real")
    assert "stand-in" not in caplog.text
