"""Transforms on exact cases, and the permuted / rotated / drift streams: sizes, classes, transforms, seeds."""

import pytest
import torch

from hywu_bench.config import RunSpec
from hywu_bench.data import dataset_tensors
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, load_builtins
from scenarios import transforms as T
from scenarios.drift import permutations, schedule_levels

load_builtins()


def build(name, seed=0, **options):
    return SCENARIOS.build(name, RunSpec(scenario=name, seed=seed), **options)


def tensors(stream, k):
    x, y, *_ = dataset_tensors(stream[k].dataset)
    return x, y


# --- transforms ---------------------------------------------------------------------------------------


def test_rotate_by_quarter_turns_is_exact_and_matches_the_interpolated_path():
    x = torch.rand(3, 2, 9, 9)
    corner = torch.zeros(1, 1, 3, 3)
    corner[0, 0, 0, 2] = 1.0  # top right
    assert T.rotate(corner, 90)[0, 0, 0, 0] == 1.0  # counter-clockwise: to the top left
    assert torch.equal(T.rotate(x, 360), x) and torch.equal(T.rotate(T.rotate(x, 180), 180), x)
    assert torch.allclose(T.rotate(x, 90), T.rotate(x, 90 + 1e-7), atol=1e-5)  # grid_sample agrees with rot90


def test_rotate_a_batch_of_two_equals_two_single_calls():
    x = torch.rand(2, 1, 12, 12)
    both = T.rotate(x, 33)
    assert torch.allclose(both, torch.cat([T.rotate(x[:1], 33), T.rotate(x[1:], 33)]))


def test_blur_keeps_constants_and_mass_and_zero_sigma_is_identity():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(T.gaussian_blur(x, 0.0), x)
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(T.gaussian_blur(flat, 1.5), flat)
    dot = torch.zeros(1, 1, 21, 21)
    dot[0, 0, 10, 10] = 1.0
    blurred = T.gaussian_blur(dot, 1.0)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0)) and blurred[0, 0, 10, 10] < 1.0
    with pytest.raises(ValueError):
        T.gaussian_blur(x, -1.0)


def test_noise_is_seeded_and_clipped():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(T.add_noise(x, 0.2, seed=1), T.add_noise(x, 0.2, seed=1))
    assert not torch.equal(T.add_noise(x, 0.2, seed=1), T.add_noise(x, 0.2, seed=2))
    noisy = T.add_noise(x, 5.0, seed=0)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(T.add_noise(x, 0.0, seed=3), x)


def test_contrast_one_is_identity_and_zero_is_the_image_mean():
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(T.adjust_contrast(x, 1.0), x)
    flat = T.adjust_contrast(x, 0.0)
    assert torch.allclose(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))


def test_permutation_is_seeded_and_invertible():
    x = torch.rand(2, 3, 5, 5)
    perm = T.pixel_permutation(5, 5, seed=4)
    assert torch.equal(perm, T.pixel_permutation(5, 5, seed=4))
    assert not torch.equal(perm, T.pixel_permutation(5, 5, seed=5))
    y = T.permute_pixels(x, perm)
    assert torch.equal(T.permute_pixels(y, perm.argsort()), x)
    assert torch.equal(y[:, 1].flatten(1), x[:, 1].flatten(1)[:, perm])  # every channel moves alike


def test_resize_to_a_common_shape():
    grey = torch.rand(2, 1, 8, 8)
    assert T.resize(grey, 28, 3).shape == (2, 3, 28, 28)
    rgb = torch.rand(2, 3, 32, 32)
    out = T.resize(rgb, 28, 1)
    assert out.shape == (2, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(T.resize(grey, 8, 1), grey)


# --- scenarios ------------------------------------------------------------------------------------------


def test_every_dataset_has_its_drift_scenarios():
    for family in ("permuted", "rotated", "drift", "preference", "inverse"):
        for dataset in ("digits", "mnist", "fmnist", "cifar10", "cifar100"):
            assert f"{family}-{dataset}" in SCENARIOS
        assert f"{family}-fashion-mnist" in SCENARIOS  # alias
    assert SCENARIOS.get("permuted-fmnist").settings == ("domain", "task")


def test_permuted_digits_sizes_classes_and_permutations():
    s = build("permuted-digits", n_experiences=3, train_per_experience=300, test_per_experience=100)
    info = s.info
    assert info.setting == "domain" and info.n_classes == 10 and info.input_shape == (1, 8, 8)
    assert [e.transform for e in info.experiences] == ["identity", "permute(1)", "permute(2)"]
    assert [(e.n_train, e.n_test) for e in info.experiences] == [(300, 100)] * 3
    assert all(e.classes == tuple(range(10)) for e in info.experiences)
    perms = permutations(3, 8, 8, seed=0)
    x0, y0 = tensors(s.test_stream, 0)
    for k in (1, 2):
        xk, yk = tensors(s.test_stream, k)
        assert torch.equal(yk, y0) and torch.equal(xk, T.permute_pixels(x0, perms[k]))
    for k in range(3):
        assert dataset_tensors(s.train_stream[k].dataset)[1].shape == (300,)
        assert int(dataset_tensors(s.train_stream[k].dataset)[-1].max()) == 0  # no task labels


def test_permutations_are_identical_per_seed_and_differ_across_seeds():
    a, b = build("permuted-digits", seed=1, n_experiences=2), build("permuted-digits", seed=1, n_experiences=2)
    c = build("permuted-digits", seed=2, n_experiences=2)
    assert torch.equal(tensors(a.train_stream, 1)[0], tensors(b.train_stream, 1)[0])
    assert not torch.equal(permutations(2, 8, 8, 1)[1], permutations(2, 8, 8, 2)[1])
    assert not torch.equal(tensors(a.test_stream, 1)[0], tensors(c.test_stream, 1)[0])


def test_rotated_follows_the_angles_and_task_setting_gives_task_labels():
    s = build("rotated-digits", angles=(0, 90, 180), setting="task")
    assert [e.transform for e in s.info.experiences] == ["rotate(0)", "rotate(90)", "rotate(180)"]
    assert s.info.setting == "task"
    x0, _ = tensors(s.test_stream, 0)
    x1, _ = tensors(s.test_stream, 1)
    assert torch.equal(x1, torch.rot90(x0, 1, dims=(2, 3)))
    assert [int(dataset_tensors(s.train_stream[k].dataset)[-1][0]) for k in range(3)] == [0, 1, 2]


def test_drift_schedule_rises_from_zero_to_the_strength():
    assert schedule_levels(5, 2.0, "linear") == [0.0, 0.5, 1.0, 1.5, 2.0]
    cosine = schedule_levels(5, 2.0, "cosine")
    assert cosine[0] == 0.0 and abs(cosine[-1] - 2.0) < 1e-12 and cosine[1] < 0.5
    s = build("drift-digits", transform="blur", strength=1.0, n_experiences=3, train_per_experience=50)
    assert [e.transform for e in s.info.experiences] == ["blur(0)", "blur(0.5)", "blur(1)"]
    assert s.info.options["levels"] == [0.0, 0.5, 1.0]
    x0, _ = tensors(s.test_stream, 0)
    x2, _ = tensors(s.test_stream, 2)
    assert torch.allclose(x2, T.gaussian_blur(x0, 1.0))
    online = build("drift-digits", transform="noise", n_experiences=40, train_per_experience=25)
    assert online.info.n_experiences == 40 and online.info.experiences[-1].n_train == 25


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="contrast strength"):
        SCENARIOS.options("drift-digits", {"transform": "contrast", "strength": 2.0})
    with pytest.raises(UserError, match="n_experiences"):
        SCENARIOS.options("permuted-digits", {"n_experiences": 0})
    with pytest.raises(UserError, match="not one of"):
        SCENARIOS.options("rotated-digits", {"setting": "class"})


def test_permuted_fmnist_is_subsampled_for_a_cpu(fashion_mnist):
    s = build("permuted-fmnist", n_experiences=2)
    assert s.info.input_shape == (1, 28, 28) and s.info.recommended["backbone"] == "mlp"
    assert [(e.n_train, e.n_test, e.dataset) for e in s.info.experiences] == [(2000, 1000, "fashion-mnist")] * 2


def test_rotation_and_drift_streams_take_a_strategys_tuned_options_and_the_user_wins(monkeypatch):
    from dataclasses import replace

    from hywu_bench.registry import STRATEGIES
    from hywu_bench.settings import resolve_hyperparameters

    load_builtins()
    tuned_options = {"generator": "mlp", "beta": 20.0, "anchors_per_step": 128}  # a table as HY-WU once had
    entry = STRATEGIES.get("hywu")
    monkeypatch.setitem(STRATEGIES._entries, "hywu", replace(entry, tuned={"rotated": tuned_options,
                                                                          "drift": tuned_options}))
    for name in ("rotated-digits", "drift-digits"):
        info = SCENARIOS.build(name, RunSpec(scenario=name)).info
        tuned = resolve_hyperparameters(RunSpec(scenario=name, strategy="hywu"), info)
        assert tuned.strategy_options == tuned_options
        mine = RunSpec(scenario=name, strategy="hywu", strategy_options={"generator": "bank", "beta": 3.0})
        assert resolve_hyperparameters(mine, info).strategy_options == {"generator": "bank", "beta": 3.0,
                                                                         "anchors_per_step": 128}
        assert resolve_hyperparameters(RunSpec(scenario=name, strategy="replay"), info).strategy_options == {}
    permuted = RunSpec(scenario="permuted-digits", strategy="hywu")
    assert resolve_hyperparameters(permuted, SCENARIOS.build("permuted-digits", permuted).info).strategy_options == {}


def test_hywus_own_table_recommends_nothing_on_rotation_and_drift_streams():
    """The defaults with rehearsal match the earlier mlp setting there (strategies/hywu/options.py)."""
    from hywu_bench.settings import resolve_hyperparameters

    load_builtins()
    for name in ("rotated-digits", "drift-digits"):
        info = SCENARIOS.build(name, RunSpec(scenario=name)).info
        assert resolve_hyperparameters(RunSpec(scenario=name, strategy="hywu"), info).strategy_options == {}
