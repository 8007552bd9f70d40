"""Plugins: a user's file (or an installed package's entry point) registers a scenario and a strategy that
runs; a plugin that fails to import or takes a name twice is a one-line error naming the file and name."""

import importlib.metadata
import sys

import pytest
from typer.testing import CliRunner

from hywu_bench.cli import app
from hywu_bench.config import RunSpec
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins, load_entry_points, load_plugin_file
from hywu_bench.runner import run

load_builtins()

# The README's example: a scenario and a strategy in one file, without touching the package.
PLUGIN = '''
from dataclasses import dataclass
import torch
from hywu_bench.data import ExperienceInfo, ExperienceTensors, ScenarioInfo, make_scenario
from hywu_bench.registry import SCENARIOS, STRATEGIES
from hywu_bench.training import HarnessTemplate

@dataclass(frozen=True)
class BlobOptions:
    n_experiences: int = 2  # two classes (Gaussian blobs in 4 dimensions) per experience

@SCENARIOS.register("{scenario}", help="Gaussian blobs, two classes per experience", settings=("class",),
                    options=BlobOptions)
def build_blobs(spec, options):
    g = torch.Generator().manual_seed(spec.seed)
    centres = 3 * torch.randn(2 * options.n_experiences, 4, generator=g)
    def part(k, n):
        y = torch.arange(2 * k, 2 * k + 2).repeat_interleave(n)
        return ExperienceTensors(centres[y].view(-1, 1, 2, 2) + torch.randn(len(y), 1, 2, 2, generator=g), y)
    exps = range(options.n_experiences)
    info = ScenarioInfo("{scenario}", "class", 2 * options.n_experiences, (1, 2, 2),
                        tuple(ExperienceInfo(k, (2 * k, 2 * k + 1), "blobs", n_train=100, n_test=40) for k in exps),
                        recommended=dict(epochs=3, batch_size=16, lr=0.1, backbone="mlp"))
    return make_scenario([part(k, 50) for k in exps], [part(k, 20) for k in exps], info)

@dataclass(frozen=True)
class SGDOptions:
    lr_scale: float = 1.0

@STRATEGIES.register("{strategy}", help="plain fine-tuning, from a plugin", settings=("class", "domain"),
                     options=SGDOptions)
def build_sgd(model, setup, options):
    optimizer = setup.optimizer(model.parameters(), lr=setup.lr * options.lr_scale)
    return HarnessTemplate(model=model, optimizer=optimizer, **setup.template_kwargs())
'''


def plugin_file(tmp_path, name="my_plugin.py", scenario="blobs", strategy="plain-sgd", body=None):
    path = tmp_path / name
    path.write_text(body if body is not None else PLUGIN.format(scenario=scenario, strategy=strategy))
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_plugin_file_registers_a_scenario_and_a_strategy_that_run(tmp_path):
    path = plugin_file(tmp_path)
    load_plugin_file(path)
    assert SCENARIOS.get("blobs").source == str(path) and STRATEGIES.get("plain-sgd").source == str(path)
    spec = RunSpec(scenario="blobs", strategy="plain-sgd", strategy_options={"lr_scale": 0.5})
    record = run(spec, tmp_path / "out")
    assert record.R.shape == (2, 2) and record.R[0, 0] > 0.8


def test_cli_run_and_list_with_a_plugin(tmp_path):
    path = plugin_file(tmp_path)
    result = invoke("run", "--plugin", path, "--scenario", "blobs", "--strategy", "plain-sgd",
                    "--set", "scenario.n_experiences=3", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert "plain-sgd on blobs, seed 0" in result.output
    assert (tmp_path / "out" / "blobs" / "plain-sgd" / "seed0" / "COMPLETE").is_file()
    listed = invoke("list", "--plugin", path)
    assert listed.exit_code == 0, listed.output
    assert f"blobs [from {path}]: Gaussian blobs" in listed.output
    assert f"plain-sgd [from {path}]" in listed.output and "lr_scale=1.0" in listed.output


def test_a_plugin_that_raises_on_import_is_one_line_naming_the_file(tmp_path):
    path = plugin_file(tmp_path, "broken.py", body="import torch\nraise RuntimeError('no GPU here')\n")
    result = invoke("run", "--plugin", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: plugin file '{path}' failed to import: RuntimeError: no GPU here"


def test_a_plugin_with_a_syntax_error_or_missing_file(tmp_path):
    path = plugin_file(tmp_path, "typo.py", body="def f(:\n")
    result = invoke("list", "--plugin", path)
    assert result.exit_code == 2 and f"plugin file '{path}' failed to import: SyntaxError" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = invoke("list", "--plugin", tmp_path / "nope.py")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_a_plugin_that_takes_a_builtin_name_names_the_file_and_the_name(tmp_path):
    path = plugin_file(tmp_path, "clash.py", strategy="naive")
    result = invoke("list", "--plugin", path)
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "strategy 'naive' is registered twice" in message and str(path) in message


def test_two_plugins_with_the_same_name_name_both_files(tmp_path):
    first = plugin_file(tmp_path, "first.py", scenario="shared-blobs", strategy="first-sgd")
    second = plugin_file(tmp_path, "second.py", scenario="shared-blobs", strategy="second-sgd")
    result = invoke("list", "--plugin", first, "--plugin", second)
    assert result.exit_code == 2
    assert "scenario 'shared-blobs' is registered twice" in result.output
    assert str(first) in result.output and str(second) in result.output


def test_a_failed_plugin_leaves_nothing_registered_so_a_fixed_file_loads(tmp_path):
    path = plugin_file(tmp_path, "halfway.py", body=PLUGIN.format(scenario="half-blobs", strategy="half-sgd")
                       + "\nraise ValueError('oops')\n")
    with pytest.raises(UserError, match="halfway.py' failed to import: ValueError: oops"):
        load_plugin_file(path)
    assert "half-blobs" not in SCENARIOS and "half-sgd" not in STRATEGIES
    path.write_text(PLUGIN.format(scenario="half-blobs", strategy="half-sgd"))
    load_plugin_file(path)
    assert "half-blobs" in SCENARIOS


def test_entry_points_register_and_a_broken_one_is_named(tmp_path, monkeypatch):
    module = "hywu_bench_test_ep_plugin"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(scenario="ep-blobs", strategy="ep-sgd"))
    (tmp_path / "hywu_bench_test_ep_broken.py").write_text("raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = importlib.metadata.EntryPoint("blobs", module, "hywu_bench.scenarios")
    broken = importlib.metadata.EntryPoint("broken", "hywu_bench_test_ep_broken", "hywu_bench.strategies")
    points = {"hywu_bench.scenarios": [good], "hywu_bench.strategies": []}
    shipped = importlib.metadata.entry_points  # hywu-bench's own built-ins stay registered
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [*shipped(group=group), *points.get(group, [])])
    load_entry_points()
    assert SCENARIOS.get("ep-blobs").source == f"entry point {module}"
    points["hywu_bench.strategies"] = [broken]
    with pytest.raises(UserError, match="entry point 'broken' .hywu_bench_test_ep_broken. failed to load"):
        load_entry_points()
    sys.modules.pop(module, None)
