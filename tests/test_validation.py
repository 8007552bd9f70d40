"""`--set validation=F`: evaluation on held-out training data, for choosing hyperparameters without the
test split; results stored apart from the test-split runs."""

from __future__ import annotations

import json

import pytest
import torch

from hywu_bench.config import RunSpec, resolve_spec
from hywu_bench.data import dataset_tensors, holdout
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, load_builtins
from hywu_bench.runner import run, warm_start_key


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


def test_holdout_splits_training_data_and_drops_the_test_split():
    load_builtins()
    spec = RunSpec(scenario="split-digits", seed=3)
    scenario = SCENARIOS.build("split-digits", spec)
    held = holdout(scenario, 0.25, seed=3)
    test_rows = set().union(*(_rows(dataset_tensors(e.dataset)[0]) for e in scenario.test_stream))
    for k, (orig, train, val) in enumerate(zip(scenario.train_stream, held.train_stream, held.test_stream)):
        x, y = dataset_tensors(orig.dataset)[:2]
        xt, yt = dataset_tensors(train.dataset)[:2]
        xv, yv = dataset_tensors(val.dataset)[:2]
        assert len(yv) == round(0.25 * len(y)) and len(yt) + len(yv) == len(y)
        assert not _rows(xt) & _rows(xv)  # disjoint
        assert _rows(xt) | _rows(xv) == _rows(x)  # together: exactly the experience's training data
        assert not _rows(xv) & test_rows  # the test split is never used
        assert sorted(yt.tolist() + yv.tolist()) == sorted(y.tolist())
        info = held.info.experiences[k]
        assert (info.n_train, info.n_test) == (len(yt), len(yv))
    again = holdout(SCENARIOS.build("split-digits", spec), 0.25, seed=3)  # seeded: the same split
    assert torch.equal(dataset_tensors(again.test_stream[0].dataset)[0],
                       dataset_tensors(held.test_stream[0].dataset)[0])


def test_holdout_keeps_condition_tokens_aligned():
    load_builtins()
    spec = RunSpec(scenario="preference-digits", seed=0)
    scenario = SCENARIOS.build("preference-digits", spec)
    held = holdout(scenario, 0.2, seed=0)
    for orig, val in zip(scenario.train_stream, held.test_stream):
        x, y, c, _ = dataset_tensors(orig.dataset)
        xv, yv, cv, tv = dataset_tensors(val.dataset)
        lookup = {row.numpy().tobytes(): (int(label), tok) for row, label, tok in zip(x.flatten(1), y, c)}
        for row, label, tok in zip(xv.flatten(1), yv, cv):
            want_label, want_tok = lookup[row.numpy().tobytes()]
            assert int(label) == want_label and torch.equal(tok, want_tok)


def test_validation_run_is_stored_apart_and_warm_start_differs(tmp_path):
    spec = resolve_spec(flags={"scenario": "split-digits", "strategy": "naive", "epochs": 1},
                        sets=["validation=0.2", "scenario.n_experiences=2"])
    record = run(spec, tmp_path)
    assert record.path == tmp_path / "split-digits-validation" / "naive" / "seed0"
    config = json.loads((record.path / "config.json").read_text())
    assert config["scenario"]["options"]["validation"] == 0.2
    for e in config["scenario"]["experiences"]:  # evaluated on a fifth of each experience's training data
        assert e["n_test"] == round(0.2 * (e["n_train"] + e["n_test"]))
    plain = spec.with_updates(validation=0.0)
    assert warm_start_key(plain) != warm_start_key(spec)
    assert plain.scenario_label == "split-digits"


def test_stored_runs_without_a_newer_field_still_match():
    spec = RunSpec(scenario="split-digits", strategy="naive")
    stored = json.loads(json.dumps(spec.to_dict()))
    del stored["validation"]  # a run stored before the field existed
    assert spec.same_request(stored)
    assert not spec.with_updates(validation=0.2).same_request(stored)
    assert not spec.same_request({**stored, "seed": 1})


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_bad_validation_fraction_is_a_user_error(value):
    with pytest.raises(UserError, match="validation must be a fraction"):
        resolve_spec(sets=[f"validation={value}"])
