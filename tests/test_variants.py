"""Strategy variants in one grid (`replay[mem_size=50,100]`), each stored apart; run-name collisions refused."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hywu_bench import suites, sweep, variants
from hywu_bench.cli import app
from hywu_bench.errors import UserError


def test_variants_parse_into_a_cartesian_product_with_their_own_names():
    assert variants.split_top_level("hywu, replay[mem_size=50,100],ewc") == ["hywu", "replay[mem_size=50,100]", "ewc"]
    found = variants.parse_all("hywu,replay[mem_size=100,200;buffer=class,experience]")
    assert [v.run_name(v.strategy) for v in found] == [
        "hywu", "replay-mem_size100-bufferclass", "replay-mem_size100-bufferexperience",
        "replay-mem_size200-bufferclass", "replay-mem_size200-bufferexperience"]
    assert variants.parse("hywu[lr=1e-3]")[0].run_name("hywu") == "hywu-lr1e_3"  # '-' joins the parts only
    for bad, message in (("replay[mem_size=1,2", "unclosed"), ("replay]", "unbalanced"), ("replay[mem_size]", "KEY=V1"),
                         ("replay[mem_size=1,1]", "twice"), ("replay[name=a,b]", "replay.name=X"), ("", "empty")):
        with pytest.raises(UserError, match=message):
            variants.parse_all(bad)


def test_a_grid_of_variants_sets_each_run_its_options_and_name():
    planned = sweep.plan("split-digits", ["hywu", "replay[mem_size=50,100]"], [0, 1],
                         ["replay.mem_size=300", "replay.buffer=experience"])
    runs = [(p.spec.run_name, p.spec.seed, p.spec.strategy_options) for p in planned]
    assert runs[0] == ("hywu", 0, {})
    assert runs[2:] == [("replay-mem_size50", 0, {"mem_size": 50, "buffer": "experience"}),  # the variant wins
                        ("replay-mem_size50", 1, {"mem_size": 50, "buffer": "experience"}),
                        ("replay-mem_size100", 0, {"mem_size": 100, "buffer": "experience"}),
                        ("replay-mem_size100", 1, {"mem_size": 100, "buffer": "experience"})]
    budgets = sweep.grid("split-digits", ["replay[memory_budget=0.5MiB,1MiB]"], [0])  # a RunSpec field as a key
    assert [(s.run_name, s.memory_budget) for s in budgets] == [("replay-memory_budget0.5MiB", 2 ** 19),
                                                                ("replay-memory_budget1MiB", 2 ** 20)]
    named = sweep.grid("split-digits", ["hywu", "replay[mem_size=50]"], [0], ["replay.name=er", "epochs=3"])
    assert [(s.run_name, s.epochs) for s in named] == [("hywu", 3), ("er-mem_size50", 3)]


def test_run_names_that_would_collide_are_refused_with_the_fix():
    with pytest.raises(UserError, match="'hywu' and 'replay' would both be stored as 'mine'.*STRATEGY.name=X"):
        sweep.grid("split-digits", ["hywu", "replay"], [0], ["name=mine"])
    with pytest.raises(UserError, match="listed twice"):
        sweep.grid("split-digits", ["replay[mem_size=50]", "replay[mem_size=50]"], [0])
    with pytest.raises(UserError, match="two runs of 'naive' would both be stored as 'naive-data_roota_b'"):
        sweep.grid("split-digits", ["naive[data_root=a-b,a_b]"], [0])  # '-' in a value becomes '_' in the name
    with pytest.raises(UserError, match="'replay' and 'naive' would both be stored as 'replay-mem_size50'"):
        sweep.grid("split-digits", ["replay[mem_size=50]", "naive"], [0], ["naive.name=replay-mem_size50"])
    assert [s.run_name for s in sweep.grid("split-digits", ["replay"], [0, 1], ["name=mine"])] == ["mine", "mine"]


def test_variants_run_and_are_stored_apart(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits",
                                      "--strategies", "naive,replay[mem_size=20,40]",
                                      "--seeds", "0", "--set", "epochs=1", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert "3 runs: 3 done" in result.output
    for name, size in (("replay-mem_size20", 20), ("replay-mem_size40", 40)):
        folder = tmp_path / "split-digits" / name / "seed0"
        config = json.loads((folder / "config.json").read_text())
        assert config["run_name"] == name and config["strategy"]["options"]["mem_size"] == size
        stored = json.loads((folder / "metrics.json").read_text())["memory"]["raw_inputs"]
        assert stored == size * (64 * 4 + 8 + 4)  # input, label and reservoir weight per buffered digit
    collide = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive,lwf",
                                       "--set", "name=x", "--out", str(tmp_path / "none")])
    assert collide.exit_code == 2 and "STRATEGY.name=X" in collide.output and not (tmp_path / "none").exists()


def test_compare_help_documents_the_syntax_and_suites_take_variants(tmp_path):
    help_text = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "300"}).output
    assert "replay[mem_size=100,500]" in help_text and "memory_budget=match:STRATEGY" in help_text
    suite = tmp_path / "suite.toml"
    suite.write_text('[tiny]\n[[tiny.scenarios]]\nscenario = "split-digits"\n'
                     'strategies = ["hywu", "replay[mem_size=50,100]", "nope[x=1]"]\nseeds = [0, 1]\n'
                     'set = ["memory_budget=match:hywu"]\n')
    plan = suites.load_suite(suite, "tiny")
    assert plan.entries[0].strategies == ["hywu", "replay[mem_size=50,100]"] and "nope[x=1]" in plan.notes[0]
    assert plan.n_runs == 6
