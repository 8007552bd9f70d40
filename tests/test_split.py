"""Split scenarios over fabricated MNIST/CIFAR files: classes per experience, sizes, task labels, the
seeded class order, option validation, and one short run of the whole pipeline on split-mnist."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from hywu_bench.config import resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS
from scenarios import datasets

N_TRAIN_PER_CLASS, N_TEST_PER_CLASS = 6, 3


@pytest.fixture(autouse=True)
def _fresh_cache():
    datasets.clear_cache()
    yield
    datasets.clear_cache()


def _write_idx(path: Path, array: np.ndarray) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(raw)


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A data root holding a tiny MNIST (and the same files as Fashion-MNIST) in torchvision's layout."""
    rng = np.random.default_rng(0)
    for folder in ("MNIST", "FashionMNIST"):
        for split, per_class in (("train", N_TRAIN_PER_CLASS), ("t10k", N_TEST_PER_CLASS)):
            labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)  # (10 * per_class,)
            images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
            _write_idx(tmp_path / folder / "raw" / f"{split}-images-idx3-ubyte.gz", images)
            _write_idx(tmp_path / folder / "raw" / f"{split}-labels-idx1-ubyte.gz", labels)
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, per_class in (("train", 2), ("test", 1)):
        labels = [c for c in range(100) for _ in range(per_class)]
        batch = {b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), b"fine_labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return tmp_path


def build(scenario: str, root: Path, seed: int = 0, **options):
    spec = resolve_spec(flags=dict(scenario=scenario, seed=seed, data_root=str(root)),
                        sets=[f"scenario.{k}={v}" for k, v in options.items()])
    return SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)


def experience_classes(scenario) -> list[tuple[int, ...]]:
    return [e.classes for e in scenario.info.experiences]


def test_split_mnist_has_five_disjoint_pairs(mnist_root):
    scenario = build("split-mnist", mnist_root)
    info = scenario.info
    assert info.name == "split-mnist" and info.setting == "class" and info.n_experiences == 5
    assert info.input_shape == (1, 28, 28) and info.n_classes == 10
    assert info.recommended["backbone"] == "mlp"
    groups = experience_classes(scenario)
    assert all(len(g) == 2 for g in groups) and sorted(c for g in groups for c in g) == list(range(10))
    for e, train_exp, test_exp in zip(info.experiences, scenario.train_stream, scenario.test_stream):
        assert (e.n_train, e.n_test) == (2 * N_TRAIN_PER_CLASS, 2 * N_TEST_PER_CLASS)
        assert len(train_exp.dataset) == e.n_train and len(test_exp.dataset) == e.n_test
        assert set(train_exp.dataset.targets) == set(e.classes) == set(test_exp.dataset.targets)
        assert set(train_exp.dataset.targets_task_labels) == {0}


def test_task_setting_gives_each_experience_its_task_label(mnist_root):
    scenario = build("split-fmnist", mnist_root, setting="task")
    assert scenario.info.setting == "task" and scenario.info.task_aware
    for i, (train_exp, test_exp) in enumerate(zip(scenario.train_stream, scenario.test_stream)):
        assert set(train_exp.dataset.targets_task_labels) == {i}
        assert set(test_exp.dataset.targets_task_labels) == {i}


def test_class_order_is_fixed_per_seed_and_differs_across_seeds(mnist_root):
    seed0 = experience_classes(build("split-mnist", mnist_root, seed=0))
    assert experience_classes(build("split-mnist", mnist_root, seed=0)) == seed0
    assert experience_classes(build("split-mnist", mnist_root, seed=1)) != seed0
    natural = experience_classes(build("split-mnist", mnist_root, seed=1, shuffle_classes="false"))
    assert natural == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def test_n_experiences_that_do_not_divide_the_classes_are_refused(mnist_root):
    with pytest.raises(UserError, match="n_experiences=3 .* use one of 1, 2, 5, 10"):
        build("split-mnist", mnist_root, n_experiences=3)


def test_split_cifar100_defaults_to_ten_and_allows_twenty(cifar100_root):
    ten = build("split-cifar100", cifar100_root)
    assert ten.info.n_experiences == 10 and all(len(g) == 10 for g in experience_classes(ten))
    assert ten.info.input_shape == (3, 32, 32) and ten.info.recommended["backbone"] == "resnet18"
    twenty = build("split-cifar100", cifar100_root, n_experiences=20)
    groups = experience_classes(twenty)
    assert len(groups) == 20 and all(len(g) == 5 for g in groups)
    assert sorted(c for g in groups for c in g) == list(range(100))
    assert [e.n_train for e in twenty.info.experiences] == [10] * 20


def test_split_cifar100_refuses_other_experience_counts(cifar100_root):
    with pytest.raises(UserError, match="n_experiences=5 is not supported; use 10 .* or 20"):
        resolve_spec(flags=dict(scenario="split-cifar100", data_root=str(cifar100_root)),
                     sets=["scenario.n_experiences=5"])


def test_split_cifar_alias_and_missing_data_message(tmp_path):
    spec = resolve_spec(flags=dict(scenario="split-cifar10", data_root=str(tmp_path)))
    assert SCENARIOS.get(spec.scenario).name == "split-cifar"
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        SCENARIOS.build(spec.scenario, spec)


@pytest.mark.parametrize("scenario", ["split-mnist", "split-fmnist"])
def test_mnist_family_recommends_a_cheap_mlp_recipe(mnist_root, scenario):
    rec = build(scenario, mnist_root).info.recommended
    assert rec["backbone"] == "mlp" and 1 <= rec["epochs"] <= 2
    assert 64 <= rec["batch_size"] <= 128 and 0.01 <= rec["lr"] <= 0.05


def test_naive_run_on_split_mnist_end_to_end(mnist_root, tmp_path):
    from hywu_bench.runner import run

    spec = resolve_spec(flags=dict(scenario="split-mnist", strategy="naive", seed=0, epochs=1, batch_size=8,
                                   device="cpu", data_root=str(mnist_root), warm_start=True))
    record = run(spec, out=tmp_path / "results")
    assert record.R.shape == (5, 5) and np.isfinite(record.R).all()
    assert record.before.shape == (5,)
    assert record.spec.backbone == "mlp" and record.spec.lr == pytest.approx(0.03)
    assert (record.path / "accuracy_matrix.csv").is_file() and (record.path / "metrics.json").is_file()
