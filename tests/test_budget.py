"""Memory budgets: parsed and validated, sized within 5%, recorded; `match:STRATEGY` pairs budgets by seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hywu_bench import results, sweep
from hywu_bench.cli import app
from hywu_bench.config import resolve_spec
from hywu_bench.data import ExperienceInfo, ScenarioInfo
from hywu_bench.errors import UserError
from hywu_bench.memory import TOLERANCE, Budget, budget_status, parse_bytes
from hywu_bench.runner import run

ITEM = 64 * 4 + 8  # an 8x8 float32 digit and its int64 label


def test_sizes_parse_exactly_and_bad_ones_say_how_to_write_them():
    assert parse_bytes("1.4MiB") == round(1.4 * 2 ** 20) == 1468006
    assert [parse_bytes(v) for v in (1000, "512KiB", "2gib", "64 B", 1e3)] == [1000, 524288, 2 * 2 ** 30, 64, 1000]
    for bad in ("1.4XB", "-1", "0", "MiB", True):
        with pytest.raises(UserError, match="not a size|must be > 0"):
            parse_bytes(bad)
    with pytest.raises(UserError, match="works in compare only"):
        resolve_spec(sets=["memory_budget=match:hywu"])
    assert resolve_spec(flags=dict(strategy="replay"), sets=["memory_budget=1.4MiB"]).memory_budget == 1468006


def _info(sizes: list[int], condition_dim: int = 0) -> ScenarioInfo:
    exps = tuple(ExperienceInfo(k, (k,), "digits", n_train=n) for k, n in enumerate(sizes))
    return ScenarioInfo("toy", "class", len(sizes), (1, 8, 8), exps, condition_dim=condition_dim)


def test_the_count_is_the_largest_that_fits():
    info = _info([100, 100, 30])
    replay = Budget("mem_size", item_extra=4)
    assert replay.count(None, info, None, 100 * (ITEM + 4) + ITEM) == 100  # one byte short of 101 items
    assert replay.count(None, info, None, 10 ** 9) == 230  # never more than the stream holds
    assert replay.count(None, info, None, ITEM) is None  # not one item fits
    per_exp = Budget("patterns_per_exp", per="experience")
    assert per_exp.count(None, info, None, 3 * 20 * ITEM) == 20
    assert per_exp.count(None, info, None, (50 + 50 + 30) * ITEM) == 50  # the short experience keeps all it has
    assert Budget("mem_size").count(None, _info([10], condition_dim=4), None, 10 * (ITEM + 16)) == 10


def test_status_says_sized_over_or_under():
    assert budget_status(None, 123, True) is None
    assert budget_status(1000, 960, True) == "sized" and budget_status(1000, 1050, True) == "sized"
    assert budget_status(1000, 1051, True) == "over" and budget_status(1000, 949, True) == "under"
    assert budget_status(1000, 1000, False) == "under" and budget_status(1000, 4000, False) == "over"


def _stored(path: Path) -> tuple[dict, dict]:
    return json.loads((path / "metrics.json").read_text()), json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("strategy, budget, option, value", [
    ("replay", 40 * 1024, "mem_size", 40 * 1024 // (ITEM + 4)),
    # HY-WU: 260 bytes per anchor (256 int8 features, a float16 scale, an int16 label); rehearsed anchors keep
    # no snapshot, so nothing is fixed
    ("hywu", 250 * 1024, "anchors_per_experience", 250 * 1024 // 260 // 5),
    ("agem", 30 * 1024, "patterns_per_exp", 30 * 1024 // ITEM // 5),
])
def test_a_budget_is_met_within_five_percent_and_recorded(strategy, budget, option, value, tmp_path):
    record = run(resolve_spec(flags=dict(strategy=strategy, epochs=1), sets=[f"memory_budget={budget}"]), tmp_path)
    metrics, config = _stored(record.path)
    used = metrics["stored_memory_bytes"]
    assert (1 - TOLERANCE) * budget <= used <= budget
    assert metrics["memory_budget_bytes"] == budget and metrics["memory_budget_status"] == "sized"
    assert used == sum(v for k, v in metrics["memory"].items() if k != "extra_parameters")
    assert config["strategy"]["options"][option] == value
    assert config["memory_budget"] == {"bytes": budget, "sized": {option: value}}
    assert config["requested_spec"]["memory_budget"] == budget


def test_a_method_that_cannot_be_sized_runs_unchanged_and_is_marked(tmp_path):
    ewc = run(resolve_spec(flags=dict(strategy="ewc", epochs=1), sets=["memory_budget=1KiB"]), tmp_path)
    metrics, config = _stored(ewc.path)
    assert metrics["memory_budget_status"] == "over" and config["memory_budget"] == {"bytes": 1024, "sized": {}}
    assert metrics["memory"]["model_state"] == metrics["stored_memory_bytes"] > 1024
    plain = run(resolve_spec(flags=dict(strategy="naive", epochs=1)), tmp_path)
    assert _stored(plain.path)[0]["memory_budget_status"] is None


def test_bad_budgets_are_one_line_errors_and_write_nothing(tmp_path):
    out = tmp_path / "results"
    for sets, message in ((["memory_budget=lots"], "is not a size"),
                          (["memory_budget=1MiB", "mem_size=100"], "memory_budget sizes replay's mem_size")):
        args = ["run", "--strategy", "replay", "--out", str(out)] + [a for s in sets for a in ("--set", s)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and message in result.output and len(result.output.splitlines()) == 1
    assert not out.exists()


class FakeExecutor:
    """Runs nothing: writes a run whose stored memory is 1000 * (seed + 1) bytes (0 for 'naive')."""

    def __init__(self, root: Path):
        self.root, self.seen = root, []

    def run(self, specs, out, listener, overwrite=False):
        outcomes = []
        for spec in specs:
            self.seen.append(spec)
            path = self.root / spec.run_name / f"seed{spec.seed}"
            path.mkdir(parents=True)
            matrix = results.matrix_to_csv(np.zeros(1), np.zeros((1, 1)))
            results.atomic_write_text(path / "accuracy_matrix.csv", matrix)
            results.atomic_write_json(path / "config.json", {})
            stored = 0 if spec.strategy == "naive" else 1000 * (spec.seed + 1)
            results.atomic_write_json(path / "metrics.json", {"stored_memory_bytes": stored})
            outcomes.append(sweep.Outcome(spec, spec.strategy != "lwf", path))
        return outcomes


def test_match_gives_each_run_the_bytes_of_the_same_seed(tmp_path):
    planned = sweep.plan("split-digits", ["hywu", "replay", "agem"], [0, 3], ["memory_budget=match:hywu"])
    fake = FakeExecutor(tmp_path / "fake")
    outcomes = sweep.run_planned(planned, tmp_path / "out", fake, None)
    assert [(s.strategy, s.seed, s.memory_budget) for s in fake.seen] == [
        ("hywu", 0, None), ("hywu", 3, None),  # first, on its own settings
        ("replay", 0, 1000), ("replay", 3, 4000), ("agem", 0, 1000), ("agem", 3, 4000)]
    assert [o.spec.memory_budget for o in outcomes] == [None, None, 1000, 4000, 1000, 4000]  # in grid order
    sets = ["replay.memory_budget=match:lwf", "agem.memory_budget=match:naive"]  # the fake's lwf fails
    failed = sweep.run_planned(sweep.plan("split-digits", ["lwf", "naive", "replay", "agem"], [0], sets),
                               tmp_path / "out", FakeExecutor(tmp_path / "f2"))
    assert [o.ok for o in failed] == [False, True, False, False]
    assert failed[2].error == "its budget is the memory of lwf seed 0, which failed"
    assert failed[3].error == ("its budget is the memory of naive seed 0, which stored no memory (0 bytes): "
                               "nothing to match")


def test_match_must_name_a_run_of_the_grid(tmp_path):
    with pytest.raises(UserError, match="'ewc' is not a run of this grid"):
        sweep.plan("split-digits", ["hywu", "replay"], [0], ["memory_budget=match:ewc"])
    with pytest.raises(UserError, match="use compare"):
        sweep.grid("split-digits", ["hywu", "replay"], [0], ["memory_budget=match:hywu"])
    with pytest.raises(UserError, match="memory_budget sizes replay's mem_size"):  # refused before hywu runs
        sweep.plan("split-digits", ["hywu", "replay"], [0], ["memory_budget=match:hywu", "replay.mem_size=100"])
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "hywu,replay",
                                      "--set", "memory_budget=match:lwf", "--seeds", "0", "--out", str(out)])
    assert result.exit_code == 2 and "'lwf' is not a run of this grid" in result.output and not out.exists()


def test_match_in_compare_end_to_end_and_a_rerun_reuses_every_run(tmp_path):
    args = ["compare", "--scenario", "split-digits", "--strategies", "hywu,replay", "--set", "memory_budget=match:hywu",
            "--seeds", "0,1", "--set", "epochs=1", "--set", "hywu.bank_size=4",
            "--set", "hywu.anchors_per_experience=20",
            "--out", str(tmp_path), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        hywu, _ = _stored(tmp_path / "split-digits" / "hywu" / f"seed{seed}")
        replay, config = _stored(tmp_path / "split-digits" / "replay" / f"seed{seed}")
        budget = hywu["stored_memory_bytes"]
        assert replay["memory_budget_bytes"] == budget and config["requested_spec"]["memory_budget"] == budget
        assert replay["memory_budget_status"] == "sized"
        assert abs(replay["stored_memory_bytes"] - budget) <= 0.05 * budget
        assert hywu["memory_budget_bytes"] is None and hywu["memory"]["raw_inputs"] == 0 < hywu["memory"]["derived"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "4 runs: 0 done, 4 skipped" in again.output, again.output
