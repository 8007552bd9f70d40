"""One verdict on stored runs (`results.verdict`) for the runner and every executor: an edited scenario file
is never taken for the one a stored run was made from, whichever executor runs the sweep."""

from __future__ import annotations

import pytest

from hywu_bench import results
from hywu_bench.config import resolve_spec


@pytest.mark.parametrize("executor", ["local", pytest.param("submitit-local", marks=pytest.mark.slow)])
def test_an_edited_scenario_file_is_refused_by_the_executor(tmp_path, executor, edited_file_is_refused):
    edited_file_is_refused(tmp_path, "--executor", executor)


def test_the_verdict_reuses_restarts_resumes_and_refuses(tmp_path):
    from hywu_bench.runner import run

    spec = resolve_spec(flags={"strategy": "naive", "epochs": 1})
    out = tmp_path / "results"
    assert results.verdict(spec, out).kind == "new"
    record = run(spec, out)
    assert results.verdict(spec, out).kind == "reuse"
    assert results.verdict(spec, out, overwrite=True).kind == "restart"
    other = resolve_spec(flags={"strategy": "naive", "epochs": 2})
    assert results.verdict(other, out).kind == "conflict"
    (record.path / results.COMPLETE).unlink()  # an unfinished run: started over, or resumed if asked and able
    assert results.verdict(spec, out).kind == "restart"
    assert results.verdict(spec, out, resume=True).kind == "restart"  # no checkpoint to resume from
    (record.path / results.CHECKPOINT).write_bytes(b"")
    assert results.verdict(spec, out, resume=True).kind == "resume"
    assert results.verdict(other, out, resume=True).kind == "conflict"
