"""Every Avalanche strategy by name: the catalogue covers what Avalanche 0.6.0 exports, the generated
options match its signatures, every runnable strategy runs a short stream, and a resume is exact or
refused in one line."""

import inspect
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from hywu_bench.cli import app
from hywu_bench.config import resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.registry import STRATEGIES, load_builtins
from hywu_bench.runner import run
from strategies.zoo import generate
from strategies.zoo.catalogue import METHODS, NOT_STRATEGIES, RUN_BY

RUNNABLE = [m.name for m in METHODS if not m.unavailable]
BY_NAME = {m.name: m for m in METHODS}
FAST = ["derpp", "er-ace", "icarl", "mas", "pnn"]  # the default suite's share; `-m slow` runs them all
# What a one-epoch run on split-digits (batch 32, 10 classes, 9 iterations per experience) needs:
EXTRA = {
    "er-aml": ["mem_size=320"],  # ER_AML draws a full batch per class from the buffer and hangs on fewer
    "packnet": ["epochs=2"],  # one epoch to train, one to fine-tune after pruning
}


def spec_for(name, **flags):
    sets = (["setting=task"] if BY_NAME[name].settings == ("task",) else []) + EXTRA.get(name, [])
    return resolve_spec(flags=dict(strategy=name, epochs=1, **flags), sets=sets)


def test_generated_options_and_table_match_the_installed_avalanche():
    assert generate.render() == generate.TARGET_FILE.read_text(), "run `python -m strategies.zoo.generate`"
    doc = generate.DOC_FILE.read_text()
    assert generate.render_doc(doc) == doc, "run `python -m strategies.zoo.generate`"


def avalanche_exports():
    import avalanche.training as training
    import avalanche.training.plugins as plugins
    from avalanche.core import BasePlugin
    from avalanche.training.templates import BaseTemplate

    strategies = {n for n, o in vars(training).items() if inspect.isclass(o) and issubclass(o, BaseTemplate)}
    plugin_names = {n for n, o in vars(plugins).items() if inspect.isclass(o) and issubclass(o, BasePlugin)}
    return strategies, plugin_names


def test_every_avalanche_strategy_and_plugin_has_a_name_or_a_reason():
    strategies, plugin_names = avalanche_exports()
    assert {"DER", "ER_ACE", "ICaRL", "PNNStrategy", "GenerativeReplay"} <= strategies
    missing = sorted((strategies | plugin_names) - set(RUN_BY) - set(NOT_STRATEGIES))
    assert not missing, f"add these to strategies/zoo/catalogue.py: {missing}"
    load_builtins()
    assert set(RUN_BY.values()) <= set(STRATEGIES.names())


def test_list_names_every_avalanche_strategy_and_why_some_cannot_run():
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    strategies, _ = avalanche_exports()
    for name in strategies - set(NOT_STRATEGIES):
        assert name in result.output, name
    for m in METHODS:
        assert f"  {m.name}: " in result.output
        if m.unavailable:
            assert f"NOT RUNNABLE HERE: {m.unavailable}" in result.output
    assert "buffer: mem_size" in result.output and "not exposed: augmentations" in result.output


def test_registering_the_catalogue_imports_neither_torch_nor_avalanche():
    code = ("import sys; from hywu_bench.registry import load_builtins, STRATEGIES; load_builtins(); "
            "STRATEGIES.options('derpp', {'alpha': '0.3'}); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'avalanche'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_options_are_typed_and_validated():
    load_builtins()
    options = STRATEGIES.options("derpp", {"alpha": "0.3", "mem_size": "500"})
    assert (options.alpha, options.mem_size, options.beta) == (0.3, 500, 0.5)
    assert STRATEGIES.options("er-ace").batch_size_mem is None  # the run's batch size, see the catalogue
    with pytest.raises(UserError, match="mem_size must be > 0"):
        STRATEGIES.options("derpp", {"mem_size": 0})
    with pytest.raises(UserError, match="unknown option 'beta' for strategy 'der'"):
        STRATEGIES.options("der", {"beta": 1.0})  # DER is DER++ with beta fixed to 0


@pytest.mark.parametrize("args, message", [
    (["run", "--strategy", "l2p"], "strategy 'l2p' cannot run here: needs timm"),
    (["run", "--strategy", "derpp", "--set", "mem_size=-3"], "mem_size must be > 0"),
    (["run", "--strategy", "packnet", "--set", "setting=task", "--set", "epochs=1"], "PackNet needs epochs >= 2"),
    (["run", "--strategy", "der", "--scenario", "preference-digits"], "cannot take the condition tokens"),
])
def test_bad_requests_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output, result.output


@pytest.fixture(scope="module")
def naive_record(tmp_path_factory):
    return run(resolve_spec(flags=dict(strategy="naive", epochs=1)), tmp_path_factory.mktemp("naive"))


def check_runs(name, out, naive):
    rec = run(spec_for(name), out)
    T = rec.R.shape[0]
    assert rec.R.shape == (T, T) and not np.isnan(rec.R).any()
    assert np.all((rec.R >= 0) & (rec.R <= 1)) and rec.R[-1].max() > 0.3  # (ER-ACE needs more than one epoch
    # to learn a new experience's classes: its incoming batch competes only among its own classes)
    m = BY_NAME[name]
    if m.buffer:
        assert rec.metrics["stored_memory_bytes"] >= 64 * 4 * 40, "a buffer of 8x8 float images"
    if not m.relearn_first and m.settings != ("task",) and m.model is None:
        assert np.array_equal(rec.R[0], naive.R[0])  # the shared warm start: row 0 is naive's


@pytest.mark.parametrize("name", FAST)
def test_runs_a_short_stream(tmp_path, naive_record, name):
    check_runs(name, tmp_path, naive_record)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(RUNNABLE) - set(FAST)))
def test_every_runnable_strategy_runs_a_short_stream(tmp_path, naive_record, name):
    check_runs(name, tmp_path, naive_record)


def check_resume(name, tmp_path, crash):
    crash(spec_for(name), tmp_path / "crashed")
    refusal = BY_NAME[name].resume
    if refusal:
        with pytest.raises(UserError, match=rf"^strategy '{name}' cannot resume exactly: .*--resume"):
            run(spec_for(name), tmp_path / "crashed", resume=True)
        return
    resumed = run(spec_for(name), tmp_path / "crashed", resume=True)
    reference = run(spec_for(name), tmp_path / "reference")
    assert np.array_equal(resumed.R, reference.R)
    assert resumed.metrics["stored_memory_bytes"] == reference.metrics["stored_memory_bytes"]


@pytest.mark.parametrize("name", ["icarl", "derpp"])  # one exact, one refused
def test_resume_is_exact_or_refused(tmp_path, name, crash_after_second_experience):
    check_resume(name, tmp_path, crash_after_second_experience)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(RUNNABLE) - {"icarl", "derpp"}))
def test_every_strategy_resumes_exactly_or_refuses(tmp_path, name, crash_after_second_experience):
    check_resume(name, tmp_path, crash_after_second_experience)


def check_budget(name, tmp_path):
    sets = ["memory_budget=40KiB"] + (["batch_size=8"] if name == "er-aml" else [])  # ER-AML: 15 per class
    rec = run(resolve_spec(flags=dict(strategy=name, epochs=1), sets=sets), tmp_path)
    assert rec.metrics["memory_budget_status"] == "sized", (name, rec.metrics["memory"])


def test_a_memory_budget_sizes_derpp_with_its_logits(tmp_path):
    check_budget("derpp", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(m.name for m in METHODS if m.item_extra is not None and m.name != "derpp"))
def test_a_memory_budget_sizes_every_method_that_declares_one(tmp_path, name):
    check_budget(name, tmp_path)

