"""Avalanche's loggers on a run (`--logger`): TensorBoard event files hold the per-experience accuracies
the runner measured; loggers are no part of a run's identity; a missing package is one line."""

import importlib.util

import numpy as np
import pytest
from typer.testing import CliRunner

from hywu_bench.cli import app
from hywu_bench.config import resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.loggers import check
from hywu_bench.runner import run


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_holds_the_accuracy_matrix_and_the_regulariser(tmp_path):
    # beta > 0: HY-WU's regulariser on generated updates runs beside its rehearsal (at the defaults it
    # rehearses its anchors only, and has no regulariser to log)
    spec = resolve_spec(flags=dict(strategy="hywu", epochs=1), sets=["strategy.beta=3"])
    rec = run(spec, tmp_path, loggers=["tensorboard", "text"])
    logged = scalars(rec.path / "logs" / "tensorboard")
    T = rec.R.shape[0]
    for j in range(T):  # one value per evaluation after each experience: column j of R
        values = logged[f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}"]
        assert np.allclose(values, rec.R[:, j], atol=1e-6), j
    assert np.allclose(logged["Top1_Acc_Stream/eval_phase/test_stream"][-1],
                       np.average(rec.R[-1], weights=[e["n_test"] for e in rec_info(rec)]), atol=1e-6)
    assert "Loss_Epoch/train_phase/train_stream" in logged
    assert len(logged["Regulariser_Epoch/train_phase/train_stream"]) >= T - 1  # HY-WU's functional memory
    assert "Top1_Acc_Exp" in (rec.path / "logs" / "log.txt").read_text()
    # A run made with loggers is the same run: asked again without them, it is reused.
    assert run(spec, tmp_path).reused


def rec_info(rec):
    import json

    return json.loads((rec.path / "config.json").read_text())["scenario"]["experiences"]


def test_a_strategy_without_a_regulariser_logs_none(tmp_path):
    rec = run(resolve_spec(flags=dict(strategy="naive", epochs=1)), tmp_path, loggers=["csv"])
    assert not any("Regulariser" in line for line in (rec.path / "logs" / "csv" / "training_results.csv").open())
    assert (rec.path / "logs" / "csv" / "eval_results.csv").read_text().count("\n") > rec.R.shape[0]


def test_unknown_or_missing_loggers_are_one_line(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="unknown logger 'tb'; use one of text, csv, tensorboard, wandb"):
        check(["tb"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    result = CliRunner().invoke(app, ["run", "--logger", "wandb", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "pip install wandb" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # refused before anything ran
    result = CliRunner().invoke(app, ["compare", "--scenario", "split-digits", "--strategies", "naive",
                                      "--executor", "ray", "--executor-opt", "address=127.0.0.1:1", "--logger", "csv",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--logger works with --executor local only" in result.output


@pytest.mark.slow
def test_wandb_runs_offline_under_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    rec = run(resolve_spec(flags=dict(strategy="naive", epochs=1)), tmp_path, loggers=["wandb"])
    runs = list((rec.path / "logs" / "wandb").rglob("offline-run-*"))
    assert runs, "an offline W&B run folder"
