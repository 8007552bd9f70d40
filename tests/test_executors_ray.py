"""The Ray executor on a loopback cluster started here: the grid gives local's tables whether the tasks
return their files or write into a shared path; a GPU request the cluster cannot meet and an address
nobody answers are one-line errors that write nothing."""

from __future__ import annotations

import socket
import time

import pytest
from typer.testing import CliRunner

from hywu_bench import results, sweep
from hywu_bench.cli import app
from hywu_bench.executors import ExecutorOptions, make_executor
from hywu_bench.executors.base import default_jobs_folder


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """One head for the module (it takes seconds to start): 2 CPUs, 100 MB object store, loopback only,
    usage stats off; its workers' TMPDIR (where tasks without a shared path run) is inside pytest's tmp.
    Stopped by ending exactly the processes it started."""
    from hywu_bench.executors.ray_loopback import loopback_head

    scratch = tmp_path_factory.mktemp("ray-scratch")
    log = tmp_path_factory.mktemp("ray-log") / "head.log"
    with loopback_head(num_cpus=2, object_store_mb=100, scratch=scratch, log=log) as address:
        yield address, scratch


def test_ray_grid_matches_local_with_files_returned_to_the_driver(tmp_path, ray_head, executor_grid,
                                                                   assert_same_tables, grid_args):
    address, scratch = ray_head
    reference, tables, grid, sets = executor_grid
    out = tmp_path / "results"
    result = CliRunner().invoke(app, [*grid_args(grid, sets, out), "--executor", "ray",
                                      "--executor-opt", f"address={address}"])
    assert result.exit_code == 0, result.output
    assert "2 runs: 2 done, 0 skipped (already complete), 0 failed" in result.output
    for path in results.find_runs(reference)[0]:
        mine = out / path.relative_to(reference)
        assert (mine / "accuracy_matrix.csv").read_bytes() == (path / "accuracy_matrix.csv").read_bytes()
    assert_same_tables(out / "split-digits" / "_report", tables)
    runs = {p.relative_to(out).as_posix() for p in out.glob("split-digits/*/seed*/*")}
    assert runs == {p.relative_to(reference).as_posix() for p in reference.glob("split-digits/*/seed*/*")}
    leftovers = [p for p in (scratch / "hywu-bench-ray").rglob("*") if "seed" in p.name]
    assert not leftovers  # the tasks' scratch copies are gone once returned


@pytest.mark.slow  # the returned-files path is the default suite's Ray grid
def test_ray_tasks_write_into_a_shared_path(tmp_path, ray_head, executor_grid):
    address, _ = ray_head
    reference, _, grid, sets = executor_grid
    out = tmp_path / "results"
    executor = make_executor(ExecutorOptions("ray", address=address, shared_path=True, retries=1))
    result = sweep.compare(grid["scenario"], ["naive"], grid["seeds"], out, sets=sets, executor=executor,
                           write_report=False)
    assert len(result.outcomes) == len(grid["seeds"]), result.outcomes
    assert all(o.ok and not o.reused for o in result.outcomes), [o.error for o in result.outcomes]
    for outcome in result.outcomes:
        assert outcome.path.is_relative_to(out.resolve()) and results.is_complete(outcome.path)
        want = results.run_dir(reference, "split-digits", "naive", outcome.spec.seed) / "accuracy_matrix.csv"
        assert (outcome.path / "accuracy_matrix.csv").read_bytes() == want.read_bytes()
    again = sweep.compare(grid["scenario"], ["naive"], grid["seeds"], out, sets=sets, executor=executor,
                          write_report=False)
    assert all(o.reused for o in again.outcomes)  # nothing submitted the second time


def test_ray_gpu_request_on_a_cluster_without_gpus_is_refused(tmp_path, ray_head):
    address, _ = ray_head
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive", "--seeds", "0",
                                      "--out", str(out), "--executor", "ray", "--executor-opt", f"address={address}",
                                      "--executor-opt", "num_gpus=1"])
    assert result.exit_code == 2, result.output
    assert "has no GPU" in result.output and "Nothing was submitted" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not default_jobs_folder(out).exists()


def test_an_unreachable_ray_address_is_refused_within_seconds(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "results"
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive", "--seeds", "0",
                                      "--out", str(out), "--executor", "ray",
                                      "--executor-opt", f"address=127.0.0.1:{port}"])
    assert time.perf_counter() - t0 < 5
    assert result.exit_code == 2, result.output
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not default_jobs_folder(out).exists()


@pytest.mark.slow
def test_a_ray_task_whose_worker_dies_is_retried_and_completes(tmp_path, ray_head, executor_grid):
    """SIGKILL the worker process in the middle of a run: Ray retries the task, the retry takes the dead
    attempt's lock over and starts the run over, and its matrix is the local one."""
    import json
    import os
    import signal
    import threading

    address, _ = ray_head
    reference, _, grid, sets = executor_grid
    out = tmp_path / "results"
    path = results.run_dir(out, "split-digits", "naive", 0)
    killed = []

    def kill_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if results.read_events(path / "events.jsonl") and not results.is_complete(path):
                try:
                    pid = json.loads((path / ".lock").read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_mid_run, daemon=True)
    watcher.start()
    executor = make_executor(ExecutorOptions("ray", address=address, shared_path=True, retries=2))
    result = sweep.compare(grid["scenario"], ["naive"], [0], out, sets=sets, executor=executor, write_report=False)
    watcher.join(1)
    assert killed, "the run finished before its worker could be killed"
    (outcome,) = result.outcomes
    assert outcome.ok, outcome.error
    want = results.run_dir(reference, "split-digits", "naive", 0) / "accuracy_matrix.csv"
    assert (path / "accuracy_matrix.csv").read_bytes() == want.read_bytes()


@pytest.mark.slow  # the driver asks the same results.verdict as the local runner (tested fast)
def test_an_edited_scenario_file_is_refused_by_ray(tmp_path, ray_head, edited_file_is_refused):
    address, _ = ray_head
    edited_file_is_refused(tmp_path, "--executor", "ray", "--executor-opt", f"address={address}")
