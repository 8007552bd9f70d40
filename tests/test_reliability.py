"""Runs repeat exactly, resume after a kill, never leave corrupt results, and fail clearly."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hywu_bench import checkpoint, results
from hywu_bench.config import resolve_spec
from hywu_bench.errors import RunDiverged, UserError
from hywu_bench.runner import run


def spec_for(strategy="naive", **flags):
    return resolve_spec(flags=dict(strategy=strategy, epochs=1, **flags))


def files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_spec_same_matrix_bit_for_bit(tmp_path):
    a = run(spec_for("replay"), tmp_path / "a")
    b = run(spec_for("replay"), tmp_path / "b")
    assert np.array_equal(a.R, b.R) and np.array_equal(a.before, b.before)
    config = json.loads((a.path / "config.json").read_text())
    assert {"torch", "avalanche-lib", "python"} <= set(config["versions"]) and config["device"] == "cpu"


KILLER = textwrap.dedent("""
    import os, signal, sys
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import LogReporter, run

    class KillAfter(LogReporter):
        def experience(self, experience, accuracies, seconds):
            if experience == 1:  # two of five experiences are done and checkpointed
                os.kill(os.getpid(), signal.SIGKILL)

    run(resolve_spec(flags=dict(strategy=sys.argv[2], epochs=1)), sys.argv[1], reporter=KillAfter())
""")


@pytest.mark.parametrize("strategy", ["replay", "ewc"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, strategy):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(script), str(out), strategy], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    path = results.run_dir(out, "split-digits", strategy, 0)
    assert (path / checkpoint.CHECKPOINT).exists() and not results.is_complete(path)
    assert results.find_runs(out) == ([], [path])  # report and compare see it as incomplete

    resumed = run(spec_for(strategy), out, resume=True)
    reference = run(spec_for(strategy), tmp_path / "reference")
    assert np.array_equal(resumed.R, reference.R)
    assert results.is_complete(path) and not (path / checkpoint.CHECKPOINT).exists()
    events = results.read_events(path / "events.jsonl")
    assert [e["experience"] for e in events] == [0, 1, 2, 3, 4]


def test_divergence_stops_the_run_and_keeps_the_partial_matrix(tmp_path):
    with pytest.raises(RunDiverged, match=r"experience \d+, epoch \d+, step \d+"):
        run(spec_for("naive", lr=1e12, warm_start=False), tmp_path)
    path = results.run_dir(tmp_path, "split-digits", "naive", 0)
    assert (path / "FAILED").exists() and not results.is_complete(path)
    assert (path / "accuracy_matrix.csv").exists()


def test_a_live_lock_refuses_a_second_writer(tmp_path):
    path = results.run_dir(tmp_path, "split-digits", "naive", 0)
    path.mkdir(parents=True)
    (path / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    with pytest.raises(UserError, match="being written by another process"):
        run(spec_for(), tmp_path)
    assert sorted(p.name for p in path.iterdir()) == [".lock"]


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = results.run_dir(tmp_path, "split-digits", "naive", 0)
    path.mkdir(parents=True)
    (path / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
    assert not run(spec_for(), tmp_path).reused
    assert results.is_complete(path) and not (path / ".lock").exists()


def test_corrupt_checkpoint_is_a_clear_error_and_changes_nothing(tmp_path):
    path = results.run_dir(tmp_path, "split-digits", "naive", 0)
    run(spec_for(), tmp_path)
    (path / results.COMPLETE).unlink()  # make it look interrupted, with a damaged checkpoint
    (path / checkpoint.CHECKPOINT).write_bytes(b"not a checkpoint")
    before = files(tmp_path)
    with pytest.raises(UserError, match="corrupt or unreadable"):
        run(spec_for(), tmp_path, resume=True)
    after = files(tmp_path)
    assert after == before


def test_results_from_an_incompatible_version_are_refused(tmp_path):
    rec = run(spec_for(), tmp_path)
    config = json.loads((rec.path / "config.json").read_text())
    config["format_version"] = 999
    (rec.path / "config.json").write_text(json.dumps(config))
    before = files(tmp_path)
    with pytest.raises(UserError, match="incompatible version"):
        run(spec_for(), tmp_path)
    assert files(tmp_path) == before


def test_a_stored_run_made_with_other_default_settings_is_not_reused(tmp_path):
    """A release that changes a scenario's recommended setting or a strategy's default must not pass
    older runs off as new ones. The stored config is edited as an older version would have written it."""
    from hywu_bench.executors.base import stored_outcome

    spec = spec_for("replay")
    first = run(spec, tmp_path)
    config_path = first.path / "config.json"
    config = json.loads(config_path.read_text())
    config["spec"]["lr"] = 0.5
    config["strategy"]["options"]["mem_size"] = 7
    config_path.write_text(json.dumps(config))
    before = files(tmp_path)
    with pytest.raises(UserError, match=r"other settings .*\(lr 0\.5 -> 0\.05, mem_size 7 -> 200\); pass --overwrite"):
        run(spec, tmp_path)
    assert stored_outcome(spec, tmp_path) is None  # compare sends it to the runner, which says the same
    assert files(tmp_path) == before
    again = run(spec, tmp_path, overwrite=True)
    assert not again.reused and json.loads(config_path.read_text())["spec"]["lr"] == 0.05
    assert run(spec, tmp_path).reused and stored_outcome(spec, tmp_path) is not None


def test_stored_results_are_json_and_csv_only(tmp_path):
    rec = run(spec_for("replay"), tmp_path)
    names = {p.name for p in rec.path.iterdir()}
    assert names == {"config.json", "accuracy_matrix.csv", "metrics.json", "events.jsonl", "interference.json",
                     "COMPLETE"}
    json.loads((rec.path / "metrics.json").read_text())


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_run(tmp_path):
    rec = run(resolve_spec(flags=dict(epochs=1, device="cuda"), sets=["precision=bf16"]), tmp_path)
    assert rec.R.shape == (5, 5)


@pytest.mark.parametrize("strategy", ["naive", "lwf", "si", "agem", "cumulative", "hywu", "lora", "olora", "hnet"])
def test_every_strategy_resumes_exactly_after_a_crash(tmp_path, strategy, crash_after_second_experience):
    def spec():
        sets = ["setting=task"] if strategy == "hnet" else []
        return resolve_spec(flags=dict(strategy=strategy, epochs=1), sets=sets)

    crash_after_second_experience(spec(), tmp_path / "crashed")
    resumed = run(spec(), tmp_path / "crashed", resume=True)
    reference = run(spec(), tmp_path / "reference")
    assert np.array_equal(resumed.R, reference.R)
    assert resumed.metrics["stored_memory_bytes"] == reference.metrics["stored_memory_bytes"]


def test_optimizer_state_survives_a_resume(tmp_path, crash_after_second_experience):
    """Adam's moments carry across experiences in an uninterrupted run; a resumed one must keep them."""
    def spec():
        return resolve_spec(flags=dict(strategy="replay", epochs=1, optimizer="adam", lr=1e-3))

    crash_after_second_experience(spec(), tmp_path / "crashed")
    resumed = run(spec(), tmp_path / "crashed", resume=True)
    assert np.array_equal(resumed.R, run(spec(), tmp_path / "reference").R)
