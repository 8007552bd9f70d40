"""compare: resumes after an interruption without redoing runs, keeps going past failures, routes --set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hywu_bench import suites, sweep
from hywu_bench.cli import app
from hywu_bench.errors import UserError
from hywu_bench.registry import STRATEGIES, load_builtins

FAST = ["epochs=1", "device=cpu"]


@dataclass
class Recorder:
    stop_after: int | None = None  # raise KeyboardInterrupt after this many finished runs

    def __post_init__(self) -> None:
        self.outcomes: list[sweep.Outcome] = []

    def started(self, spec) -> None: ...

    def finished(self, outcome: sweep.Outcome) -> None:
        self.outcomes.append(outcome)
        if self.stop_after is not None and len(self.outcomes) >= self.stop_after:
            raise KeyboardInterrupt


def test_interrupted_compare_resumes_without_redoing_runs(tmp_path: Path) -> None:
    first = Recorder(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        sweep.compare("split-digits", ["naive", "lwf"], [0], tmp_path, sets=FAST, listener=first)
    done = first.outcomes[0]
    assert done.ok and not done.reused and done.spec.strategy == "naive"
    matrix = done.path / "accuracy_matrix.csv"
    stamp = matrix.stat().st_mtime_ns
    assert not (tmp_path / "split-digits" / "lwf" / "seed0" / "COMPLETE").exists()

    again = Recorder()
    result = sweep.compare("split-digits", ["naive", "lwf"], [0], tmp_path, sets=FAST, listener=again)
    by_name = {o.spec.strategy: o for o in result.outcomes}
    assert by_name["naive"].reused and not by_name["lwf"].reused and by_name["lwf"].ok
    assert matrix.stat().st_mtime_ns == stamp  # the finished run was not touched
    assert (tmp_path / "split-digits" / "_report" / "forgetting.md").exists()
    assert result.report.scenarios["split-digits"]

    cli = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive,lwf",
                                   "--seeds", "0", "--out", str(tmp_path), "--set", "epochs=1", "--set", "device=cpu"])
    assert cli.exit_code == 0, cli.output
    assert "2 runs: 0 done, 2 skipped (already complete), 0 failed; wall time" in cli.output
    assert "[1/2] naive seed 0 on split-digits: skipped (already complete)" in cli.output


@dataclass(frozen=True)
class _NoOptions:
    pass


def _register_broken() -> None:
    load_builtins()
    if "test-broken" not in STRATEGIES:
        @STRATEGIES.register("test-broken", help="fails on purpose", settings=("class",), options=_NoOptions)
        def build(model, setup, options):  # noqa: ANN001
            raise RuntimeError("broken on purpose")


def test_a_failed_run_is_listed_and_does_not_stop_the_others(tmp_path: Path) -> None:
    _register_broken()
    result = sweep.compare("split-digits", ["test-broken", "naive"], [0], tmp_path, sets=FAST)
    assert [o.ok for o in result.outcomes] == [False, True]
    assert result.failures[0].error == "RuntimeError: broken on purpose"
    assert "Traceback" in result.failures[0].details
    assert "broken on purpose" in result.failures[0].log.read_text()  # the log the summary points to
    assert not result.failures[0].log.is_relative_to(tmp_path)  # beside the results folder, not in it
    assert result.report is not None  # the report covers the runs that finished


def test_process_executor_runs_in_parallel_workers(tmp_path: Path) -> None:
    specs = sweep.grid("split-digits", ["naive"], [0, 1], FAST)
    recorder = Recorder()
    outcomes = sweep.ProcessExecutor(2, threads=1).run(specs, tmp_path, recorder)
    assert sorted(o.spec.seed for o in outcomes) == [0, 1] and all(o.ok for o in outcomes), outcomes
    assert all((o.path / "COMPLETE").exists() for o in outcomes)


def test_set_pairs_go_to_the_strategies_that_declare_them() -> None:
    load_builtins()
    grid = ["naive", "replay", "ewc"]
    sets = ["epochs=2", "replay.mem_size=300", "ewc_lambda=5", "strategy.buffer=experience", "setting=task"]
    assert sweep._sets_for("naive", sets, grid, "split-digits") == ["epochs=2", "setting=task"]
    assert sweep._sets_for("replay", sets, grid, "split-digits") == [
        "epochs=2", "strategy.mem_size=300", "strategy.buffer=experience", "setting=task"]
    assert sweep._sets_for("ewc", sets, grid, "split-digits") == ["epochs=2", "ewc_lambda=5", "setting=task"]
    specs = sweep.grid("split-digits", grid, [0, 3], sets)
    assert [(s.strategy, s.seed) for s in specs][:3] == [("naive", 0), ("naive", 3), ("replay", 0)]
    assert specs[2].strategy_options == {"mem_size": 300, "buffer": "experience"}
    assert specs[4].strategy_options == {"ewc_lambda": 5.0} and specs[0].scenario_options == {"setting": "task"}


def test_bad_grids_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Did you mean 'replay'"):
        sweep.grid("split-digits", ["naive", "replya"], [0])
    with pytest.raises(UserError, match="listed twice"):
        sweep.grid("split-digits", ["naive", "naive"], [0])
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive",
                                      "--seeds", "0,x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "'x' is not a seed" in result.output


def test_shipped_suite_loads_at_both_scales(tmp_path: Path) -> None:
    smoke, full = suites.load_suite(None, "smoke"), suites.load_suite(None, "full")
    assert smoke.entries[0].scenario == "split-digits" and smoke.workers == 2
    assert {"naive", "replay", "ewc"} <= set(smoke.entries[0].strategies)
    assert smoke.n_runs > 20 and full.n_runs > smoke.n_runs
    assert {e.scenario for e in smoke.entries} <= {e.scenario for e in full.entries} | {"split-digits"}
    with pytest.raises(UserError, match="no scale 'huge'"):
        suites.load_suite(None, "huge")
    custom = tmp_path / "suite.toml"
    custom.write_text('[tiny]\n[[tiny.scenarios]]\nscenario = "split-digits"\n'
                      'strategies = ["naive", "not-yet-written"]\nseeds = [0]\n')
    plan = suites.load_suite(custom, "tiny")
    assert plan.entries[0].strategies == ["naive"] and "not-yet-written" in plan.notes[0]


def test_executor_options_come_from_a_suite_table_a_file_and_flags_in_that_order(tmp_path: Path) -> None:
    from hywu_bench.cli.sweep import executor_options

    suite = tmp_path / "suite.toml"
    suite.write_text('[tiny]\n[tiny.executor]\nkind = "slurm"\npartition = "gpu"\ntime = "8:00:00"\n'
                     'sbatch_lines = ["--account=lab"]\n[[tiny.scenarios]]\nscenario = "split-digits"\n'
                     'strategies = ["naive"]\n')
    plan = suites.load_suite(suite, "tiny")
    options = executor_options(None, None, None, None, plan.executor)
    assert (options.kind, options.partition, options.time_minutes, options.sbatch_lines) == \
        ("slurm", "gpu", 480, ("--account=lab",))
    config = tmp_path / "cluster.toml"
    config.write_text('[executor]\ntime = "90"\ngpus_per_task = 1\n')
    flags = executor_options(None, ["partition=short", "sbatch_lines=--qos=high"], None, config, plan.executor)
    assert (flags.partition, flags.time_minutes, flags.gpus_per_task) == ("short", 90, 1)
    assert flags.sbatch_lines == ("--account=lab", "--qos=high")  # a tuple key given again adds to it
    assert executor_options("local", None, 3, None, None).workers == 3
    (tmp_path / "empty.toml").write_text("title = 'no executor here'\n")
    with pytest.raises(UserError, match=r"has no \[executor\] table"):
        executor_options(None, None, None, tmp_path / "empty.toml")
    suite.write_text('[tiny]\nexecutor = "slurm"\n'
                     '[[tiny.scenarios]]\nscenario = "split-digits"\nstrategies = ["naive"]\n')
    with pytest.raises(UserError, match=r"tiny.executor must be a table"):
        suites.load_suite(suite, "tiny")
