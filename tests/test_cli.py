"""The CLI through Typer's CliRunner: the default run, list, and every bad input ending in exit code 2."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hywu_bench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    result = invoke("run", "--out", str(out), "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    return out, result


def snapshot(out: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_default_run_prints_the_table_and_writes_results(finished):
    out, result = finished
    for key in ("final average accuracy", "forgetting", "BWT", "wall time", "results:"):
        assert key in result.output
    run = out / "split-digits" / "hywu" / "seed0"
    for name in ("config.json", "accuracy_matrix.csv", "metrics.json", "events.jsonl", "COMPLETE"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["epochs"] == 2 and config["spec"]["backbone"] == "mlp"
    assert "torch" in config["versions"]
    lines = (run / "accuracy_matrix.csv").read_text().splitlines()
    assert lines[0] == "row,exp0,exp1,exp2,exp3,exp4" and lines[1].startswith("before,")
    assert len(lines) == 7


def test_second_identical_run_is_reused(finished):
    out, _ = finished
    before = snapshot(out)
    result = invoke("run", "--out", str(out), "--epochs", "2", "-q")
    assert result.exit_code == 0 and "reused" in result.output
    assert snapshot(out) == before


def test_list_shows_settings_and_options():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert "split-digits" in result.output and "replay" in result.output
    assert "class-incremental" in result.output and "mem_size=200" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("hywu-bench ")


@pytest.mark.parametrize("args,message", [
    (["--scenario", "split-digts"], "Did you mean 'split-digits'"),
    (["--strategy", "replai"], "Did you mean 'replay'"),
    (["--set", "mem_sise=3", "--strategy", "replay"], "unknown key 'mem_sise'"),
    (["--set", "epochs"], "malformed"),
    (["--epochs", "0"], "epochs must be > 0"),
    (["--lr", "-0.1"], "lr must be > 0"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--device", "tpu"], "unknown device"),
    (["--set", "eval_every=-1"], "eval_every must be >= 0"),
    (["--set", "data_path=fast"], "data_path' = 'fast' is not one of 'tensor', 'avalanche'"),
    (["--set", "scenario.n_experiences=3", "--seed", "5"], "must divide"),
    (["--epochs", "3"], "different configuration"),
    (["--strategy", "hnet", "--seed", "6"], "task label at test time"),  # a builder's own check
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(finished, args, message):
    out, _ = finished
    before = snapshot(out)
    result = invoke("run", "--out", str(out), "-q", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot(out) == before


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [")
    result = invoke("run", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "not valid TOML" in result.output
    bad.write_text("epoks = 3")
    result = invoke("run", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "unknown key 'epoks'" in result.output
    assert not (tmp_path / "r").exists()


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("run", "--out", str(blocker / "results"), "-q")
    assert result.exit_code == 2 and "not writable" in result.output
    assert blocker.read_text() == "not a folder"


def test_compare_and_paper_pass_data_root_to_every_run(tmp_path, monkeypatch):
    from hywu_bench import sweep
    from hywu_bench.errors import UserError

    original = sweep.plan

    def planned(scenario, strategies, seeds, sets=(), flags=None):
        specs = original(scenario, strategies, seeds, sets, flags)
        raise UserError("data roots: " + ", ".join(sorted({p.spec.data_root for p in specs})))

    monkeypatch.setattr(sweep, "plan", planned, raising=True)
    monkeypatch.setattr("hywu_bench.suites.plan_grid", planned, raising=True)
    for command in (["compare", "--scenario", "split-digits", "--strategies", "naive,replay", "--seeds", "0-1"],
                    ["paper"]):
        result = invoke(*command, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "r"))
        assert result.exit_code == 2 and f"data roots: {tmp_path / 'data'}" in result.output, result.output
