"""Executors: submitit-local runs the grid to local's tables, a killed job is redone alone, a preempted job
resumes from its checkpoint, SLURM submits one array, and bad executor input fails before anything runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hywu_bench import locking, results, sweep
from hywu_bench.cli import app
from hywu_bench.config import resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.executors import ExecutorOptions, make_executor, parse_minutes
from hywu_bench.executors.base import default_jobs_folder
from hywu_bench.executors.slurm import SubmititExecutor, sbatch_options, submitit_parameters
from hywu_bench.runner import run


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def files_of(out: Path) -> set[str]:
    """Every file of a results folder but the report, relative to it."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*")
            if p.is_file() and "_report" not in p.relative_to(out).parts}


def lock_pid(path: Path) -> int:
    return int(json.loads((path / locking.LOCK).read_text())["pid"])


def when_experiences_done(path: Path, n: int, action, timeout: float = 120.0) -> threading.Thread:
    """In the background: once `path` has `n` finished experiences (while its run is still going), act
    on the pid holding its lock."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(results.read_events(path / "events.jsonl")) >= n and not results.is_complete(path):
                try:
                    action(lock_pid(path))
                    return
                except (OSError, ValueError, KeyError):  # the lock is being written
                    pass
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_submitit_local_matches_local_and_a_killed_job_is_redone_alone(tmp_path, executor_grid, assert_same_tables,
                                                                       grid_args):
    reference, tables, grid, sets = executor_grid
    out = tmp_path / "results"
    victim = results.run_dir(out, "split-digits", "lwf", 0)
    watcher = when_experiences_done(victim, 1, lambda pid: os.kill(pid, signal.SIGKILL))
    first = cli(*grid_args(grid, sets, out), "--executor", "submitit-local")
    watcher.join(1)
    assert first.exit_code == 1, first.output
    assert "2 runs: 1 done, 0 skipped (already complete), 1 failed" in first.output
    failed = next(line for line in first.output.splitlines() if line.startswith("  lwf seed 0"))
    log = Path(failed.rsplit("  log: ", 1)[1])
    assert "ended without a result" in failed and log.is_file() and log.suffix == ".err"
    assert not results.is_complete(victim) and (victim / "config.json").exists()  # killed mid-run
    others = {p: snapshot(p) for p in (out / "split-digits").glob("*/seed*") if p != victim}
    assert len(others) == 1

    second = cli(*grid_args(grid, sets, out), "--executor", "submitit-local")
    assert second.exit_code == 0, second.output
    assert "2 runs: 1 done, 1 skipped (already complete), 0 failed" in second.output
    assert all(snapshot(p) == before for p, before in others.items())  # only the killed run was redone
    for path in results.find_runs(reference)[0]:
        mine = out / path.relative_to(reference)
        assert (mine / "accuracy_matrix.csv").read_bytes() == (path / "accuracy_matrix.csv").read_bytes()
    assert_same_tables(out / "split-digits" / "_report", tables)
    assert files_of(out) == files_of(reference)  # the same files as local: no pickle, no log, no leftover
    assert list((default_jobs_folder(out) / "submitit").glob("*/*_result.pkl"))  # submitit's live beside it


@pytest.mark.slow  # a real SIGUSR2 requeue through submitit: ~40 s on 2 cores
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    spec = resolve_spec(flags=dict(strategy="naive", epochs=100, device="cpu"))
    out = tmp_path / "results"
    path = results.run_dir(out, "split-digits", "naive", 0)
    executor = SubmititExecutor(ExecutorOptions("submitit-local"))
    started = {}

    def preempt(pid: int) -> None:
        started["config"] = (path / "config.json").stat().st_mtime_ns
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends before preempting or at the time limit

    watcher = when_experiences_done(path, 2, preempt)
    (job,) = executor.submit([spec], out)
    outcome = job.result()
    watcher.join(1)
    assert outcome.ok and not outcome.reused, outcome.error
    assert "config" in started, "the run finished before it could be preempted"
    logs = Path(job.paths.stderr).read_text() + Path(job.paths.stdout).read_text()
    assert "Requeued job" in logs and "resuming" in logs, logs[-3000:]
    assert (path / "config.json").stat().st_mtime_ns == started["config"]  # continued, not started over
    assert [e["experience"] for e in results.read_events(path / "events.jsonl")] == [0, 1, 2, 3, 4]
    reference = run(spec, tmp_path / "reference")
    assert np.array_equal(results.load_run(path).R, reference.R)


FAKE_SBATCH = """#!/bin/sh
cp "$1" "{record}/submitted.sh"
echo "Submitted batch job 4242"
"""


def test_slurm_submits_one_array_with_the_requested_options(tmp_path, monkeypatch):
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir(), record.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(record=record))
    (bin_dir / "srun").write_text("#!/bin/sh\necho slurm 23.02\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    options = ExecutorOptions("slurm", time="1-00:00:00", partition="gpu", gpus_per_task=1, cpus_per_task=8,
                              mem="32G", array_parallelism=2, sbatch_lines=("--account=mylab", "#SBATCH --qos high"))
    specs = sweep.grid("split-digits", ["naive", "lwf"], [0, 1])
    jobs = make_executor(options).submit(specs, tmp_path / "results")
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    script = (record / "submitted.sh").read_text()
    for line in ("--array=0-3%2", "--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=8", "--mem=32G",
                 "--time=1440", "--account=mylab", "--qos=high", "--signal=USR2@90", "--ntasks-per-node=1",
                 "--job-name=hywu-bench-split-digits"):
        assert f"#SBATCH {line}\n" in script, line
    assert script.count("srun") == 1 and not (tmp_path / "results").exists()


def test_slurm_without_sbatch_is_one_line_and_submits_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "results"
    result = cli("compare", "--scenario", "split-digits", "--strategies", "naive", "--seeds", "0", "--out", str(out),
                 "--executor", "slurm", "--executor-opt", "partition=gpu")
    assert result.exit_code == 2, result.output
    assert "'sbatch' is not on PATH" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not default_jobs_folder(out).exists()


@pytest.mark.parametrize("args,message", [
    (["--executor", "kubernetes"], "unknown executor 'kubernetes'; use one of: local, submitit-local, slurm, ray"),
    (["--executor-opt", "address=10.0.0.1:6379"], "'address' belongs to --executor ray, not to --executor local"),
    (["--executor", "slurm", "--workers", "4"], "'workers' belongs to --executor local, not to --executor slurm"),
    (["--executor", "ray", "--executor-opt", "partition=gpu", "--executor-opt", "address=h:1"],
     "'partition' belongs to --executor submitit-local or slurm"),
    (["--executor", "slurm", "--executor-opt", "partion=gpu"],
     "unknown executor option 'partion'. Did you mean 'partition'?"),
    (["--executor", "slurm", "--executor-opt", "partition"], "--set 'partition' is malformed"),
    (["--executor", "ray"], "--executor ray needs --executor-opt address=HOST:PORT"),
    (["--executor", "ray", "--executor-opt", "address=nohost"], "'nohost' is not HOST:PORT"),
    (["--executor", "submitit-local", "--executor-opt", "time=4h"], "time='4h' is not a time"),
    (["--executor", "submitit-local", "--executor-opt", "cpus_per_task=0"], "cpus_per_task must be >= 1"),
    (["--executor", "submitit-local", "--executor-opt", "cpus_per_task=many"],
     "'executor option cpus_per_task' = 'many' has the wrong type"),
    (["--executor", "slurm", "--executor-opt", "sbatch_lines=-A lab"], "give the long form"),
    pytest.param(["--executor", "submitit-local", "--executor-opt", "gpus_per_task=1"],
                 "this machine has 0 CUDA device(s)",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")),
])
def test_bad_executor_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "results"
    result = cli("compare", "--scenario", "split-digits", "--strategies", "naive", "--seeds", "0",
                 "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not default_jobs_folder(out).exists()


def test_paper_takes_the_same_executor_options(tmp_path):
    result = cli("paper", "--scale", "smoke", "--out", str(tmp_path / "p"), "--executor", "nope")
    assert result.exit_code == 2 and "unknown executor 'nope'" in result.output


def test_slurm_times_and_sbatch_lines_parse_as_slurm_reads_them():
    assert [parse_minutes(t) for t in ("90", "4:00:00", "1-00:00:00", "30:30", "2-12")] == [90, 240, 1440, 31, 3600]
    with pytest.raises(UserError, match="under a minute"):
        parse_minutes("0:30")
    assert sbatch_options(["--account=lab", "qos=high", "#SBATCH --constraint volta32gb", "--exclusive"]) == {
        "account": "lab", "qos": "high", "constraint": "volta32gb", "exclusive": True}
    local = submitit_parameters(ExecutorOptions("submitit-local", gpus_per_task=1, partition="ignored"), "n")
    assert local == {"name": "n", "timeout_min": 240, "tasks_per_node": 1, "nodes": 1, "gpus_per_node": 1}


def test_a_lock_left_by_an_earlier_attempt_of_the_same_job_is_taken_over(tmp_path):
    """A requeued SLURM job or a retried Ray task may start on another host, where the first attempt's pid
    cannot be checked: the engine's job id says it is the same job."""
    spec = resolve_spec(flags=dict(strategy="naive", epochs=1, device="cpu"))
    path = results.run_dir(tmp_path, "split-digits", "naive", 0)
    path.mkdir(parents=True)
    (path / locking.LOCK).write_text(json.dumps({"host": "node-17", "pid": 1, "job": "submitit:4242_3"}))
    with pytest.raises(UserError, match="being written by another process"):
        run(spec, tmp_path, job_id="submitit:4242_0")
    assert not run(spec, tmp_path, job_id="submitit:4242_3").reused
    assert results.is_complete(path) and not (path / locking.LOCK).exists()


def test_choosing_an_executor_imports_no_torch():
    """The CLI's executor choice fails before torch is imported (an unreachable cluster answers in seconds)."""
    code = ("import sys; from hywu_bench.executors import ExecutorOptions, make_executor; "
            "make_executor(ExecutorOptions('local')); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
