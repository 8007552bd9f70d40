"""Preference and inverse streams: label maps per seed, condition tokens and the user channel match users."""

import pytest
import torch

from hywu_bench.config import RunSpec
from hywu_bench.data import dataset_tensors
from hywu_bench.registry import SCENARIOS, load_builtins
from hywu_bench.runner import run
from scenarios.personalization import inverse_maps, preference_maps, user_plane

load_builtins()


def build(name, seed=0, **options):
    return SCENARIOS.build(name, RunSpec(scenario=name, seed=seed), **options)


def columns(stream, k):
    return dataset_tensors(stream[k].dataset)  # [x, y, c, t]


def test_label_maps_are_distinct_permutations_fixed_per_seed():
    maps = preference_maps(6, 10, seed=3)
    assert maps.shape == (6, 10)
    assert all(torch.equal(m.sort().values, torch.arange(10)) for m in maps)
    assert len({tuple(m.tolist()) for m in maps}) == 6
    assert torch.equal(maps, preference_maps(6, 10, seed=3))
    assert not torch.equal(maps, preference_maps(6, 10, seed=4))
    assert len({tuple(m.tolist()) for m in preference_maps(6, 3, seed=0)}) == 6  # all of 3! = 6, none repeated


def test_inverse_pairs_are_exactly_opposed():
    maps = inverse_maps(3, 10, seed=0)
    assert maps.shape == (6, 10)
    assert torch.equal(maps[0], torch.arange(10)) and torch.equal(maps[1], 9 - torch.arange(10))
    for p in range(3):
        assert torch.equal(maps[2 * p] + maps[2 * p + 1], torch.full((10,), 9))
    assert not torch.equal(inverse_maps(2, 10, 0)[2], inverse_maps(2, 10, 1)[2])


def test_user_plane_bands_are_disjoint_and_cover_the_plane():
    planes = torch.cat([user_plane(1, 28, 28, u, 4) for u in range(4)])  # (4, 1, 28, 28)
    assert torch.equal(planes.gt(0).sum(0), torch.ones(1, 28, 28, dtype=torch.long))  # disjoint, covering
    assert torch.allclose(planes.flatten(1).norm(dim=1), torch.ones(4))  # unit norm: no louder than a bias
    assert torch.equal(planes[1, 0, 7:14] > 0, torch.ones(7, 28, dtype=torch.bool))  # user 1 of 4: rows 7..13
    with pytest.raises(ValueError):
        user_plane(1, 2, 2, 0, 5)


def test_preference_users_tokens_channel_and_labels():
    s = build("preference-digits", n_users=3, train_per_experience=200, test_per_experience=100)
    info = s.info
    assert info.setting == "domain" and info.condition_dim == 3 and info.input_shape == (2, 8, 8)
    assert [e.user for e in info.experiences] == [0, 1, 2]
    assert [e.label for e in info.experiences] == ["user0", "user1", "user2"]
    assert [(e.n_train, e.n_test) for e in info.experiences] == [(200, 100)] * 3
    maps = torch.tensor(info.options["label_maps"])
    assert torch.equal(maps, preference_maps(3, 10, seed=0))
    x0, y0, *_ = columns(s.train_stream, 0)
    original = maps[0].argsort()[y0]  # user 0's labels back to the dataset's classes
    for u in range(3):
        for stream in (s.train_stream, s.test_stream):
            x, y, c, t = columns(stream, u)
            assert torch.equal(c, torch.eye(3)[u].expand(len(y), 3))  # the token is the user's one-hot
            assert torch.equal(x[:, 1:], user_plane(len(y), 8, 8, u, 3))  # and so is the extra channel
            assert int(t.max()) == 0
        x, y, c, _ = columns(s.train_stream, u)
        assert torch.equal(x[:, :1], x0[:, :1])  # the same images for every user
        assert torch.equal(y, maps[u][original])  # relabelled by the user's map
    assert info.experiences[1].transform == "relabel(" + " ".join(map(str, maps[1].tolist())) + ")"


def test_label_maps_follow_the_seed():
    a = build("preference-digits", seed=5, n_users=2, train_per_experience=50)
    b = build("preference-digits", seed=5, n_users=2, train_per_experience=50)
    c = build("preference-digits", seed=6, n_users=2, train_per_experience=50)
    assert a.info.options["label_maps"] == b.info.options["label_maps"] != c.info.options["label_maps"]
    assert torch.equal(columns(a.train_stream, 1)[1], columns(b.train_stream, 1)[1])


def test_token_only_and_fresh_images_options():
    s = build("inverse-digits", n_pairs=1, user_in_input=False, same_images=False, train_per_experience=100)
    assert s.info.input_shape == (1, 8, 8) and s.info.condition_dim == 2
    assert [e.transform for e in s.info.experiences] == ["identity", "reverse"]
    x0, x1 = columns(s.train_stream, 0)[0], columns(s.train_stream, 1)[0]
    assert x0.shape == (100, 1, 8, 8) and not torch.equal(x0, x1)
    x, y, c, _ = columns(s.test_stream, 1)
    assert torch.equal(y, 9 - columns(s.test_stream, 0)[1]) and torch.equal(c[:, 1], torch.ones(len(y)))


def test_preference_fmnist_recipe_and_shape(fashion_mnist):
    s = build("preference-fmnist", n_users=4)
    assert s.info.input_shape == (2, 28, 28) and s.info.condition_dim == 4
    assert [(e.n_train, e.n_test) for e in s.info.experiences] == [(2000, 1000)] * 4


def test_naive_fine_tuning_forgets_earlier_users(tmp_path):
    """The scenario causes the interference it is built for: fine-tuning on user k overwrites user k-1."""
    spec = RunSpec(scenario="preference-digits", strategy="naive", seed=0,
                   scenario_options={"n_users": 3, "test_per_experience": 200})
    record = run(spec, tmp_path)
    R = record.R
    assert R[0, 0] > 0.7 and R[1, 1] > 0.7  # each user is learnt...
    assert R[1, 0] < R[0, 0] - 0.4  # ...and the next user's labels overwrite the previous one's
    assert record.metrics["forgetting"] > 0.4


def test_user_streams_take_a_strategys_tuned_lr_and_the_user_wins(monkeypatch):
    from dataclasses import replace

    from hywu_bench.registry import STRATEGIES
    from hywu_bench.settings import resolve_hyperparameters

    load_builtins()
    entry = replace(STRATEGIES.get("hywu"), tuned={"preference": {"lr": 2e-3}})  # a table as HY-WU once had
    monkeypatch.setitem(STRATEGIES._entries, "hywu", entry)
    scenario = SCENARIOS.build("preference-digits", RunSpec(scenario="preference-digits"))
    tuned = resolve_hyperparameters(RunSpec(scenario="preference-digits", strategy="hywu"), scenario.info)
    assert tuned.strategy_options == {"lr": 2e-3}
    mine = RunSpec(scenario="preference-digits", strategy="hywu", strategy_options={"lr": 5e-4, "beta": 1.0})
    assert resolve_hyperparameters(mine, scenario.info).strategy_options == {"lr": 5e-4, "beta": 1.0}
    other = resolve_hyperparameters(RunSpec(scenario="preference-digits", strategy="replay"), scenario.info)
    assert other.strategy_options == {}  # tuned options are per strategy
    drift = SCENARIOS.build("permuted-digits", RunSpec(scenario="permuted-digits"))
    assert resolve_hyperparameters(RunSpec(scenario="permuted-digits"), drift.info).strategy_options == {}
