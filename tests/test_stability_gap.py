"""Continual evaluation (eval_every): the curve on disk, min-ACC and WC-ACC from it, no effect on training,
and a curve that survives --resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hywu_bench import figures, metrics, results, tables
from hywu_bench.config import resolve_spec
from hywu_bench.runner import LogReporter, run


def spec_for(strategy: str = "naive", scenario: str = "split-digits", every: int = 3, **flags):
    sets = [f"eval_every={every}"] if every else []
    return resolve_spec(flags=dict(strategy=strategy, scenario=scenario, epochs=1, device="cpu", **flags), sets=sets)


@pytest.fixture(scope="module")
def curved(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    return out, run(spec_for("replay"), out)


def test_curve_csv_holds_the_seen_experiences_and_the_boundaries_equal_R(curved):
    _, record = curved
    text = (record.path / results.CURVE).read_text().splitlines()
    assert text[0] == "iteration,experience,acc_exp0,acc_exp1,acc_exp2,acc_exp3,acc_exp4"
    iterations, experience, acc = results.curve_from_csv(record.path / results.CURVE)
    assert np.all(np.diff(iterations) > 0) and np.all(np.diff(experience) >= 0)
    for n, k in enumerate(experience):  # evaluated on experiences 0..k, NaN after
        assert not np.isnan(acc[n, :k + 1]).any() and np.isnan(acc[n, k + 1:]).all()
    periodic = [i for i, k in zip(iterations, experience) if i % 3 == 0 and i > 0]
    assert len(periodic) >= 5  # split-digits, batch 32: about 9 iterations per experience
    for k in range(5):  # the last row of each experience is its boundary evaluation: row k of R
        last = np.flatnonzero(experience == k)[-1]
        assert np.array_equal(acc[last, :k + 1], record.R[k, :k + 1])


def test_min_acc_and_wc_acc_recomputed_from_curve_csv_equal_metrics_json(curved):
    _, record = curved
    stored = json.loads((record.path / "metrics.json").read_text())
    iterations, experience, acc = results.curve_from_csv(record.path / results.CURVE)
    # By hand, from the paper's definitions: the minimum of each earlier experience over the evaluations
    # taken after it was learnt, averaged; WC-ACC adds the final accuracy on the last one with weight 1/T.
    T = acc.shape[1]
    minima = [min(acc[n, j] for n in range(len(acc)) if experience[n] > j) for j in range(T - 1)]
    min_acc = sum(minima) / (T - 1)
    wc_acc = acc[-1, T - 1] / T + (1 - 1 / T) * min_acc
    assert stored["min_acc"] == pytest.approx(min_acc, abs=1e-12)
    assert stored["wc_acc"] == pytest.approx(wc_acc, abs=1e-12)
    curve = metrics.EvaluationCurve(iterations, experience, acc)
    assert metrics.stability_summary(curve) == pytest.approx({k: stored[k] for k in ("min_acc", "wc_acc")}, abs=1e-12)
    assert stored["curve_evaluations"] == len(acc) and stored["curve_eval_seconds"] > 0
    # min-ACC can only be at or below the accuracies at the boundaries (which are evaluations too)
    assert min_acc <= np.mean([record.R[j + 1:, j].min() for j in range(T - 1)]) + 1e-12


@pytest.mark.parametrize("strategy,scenario", [("replay", "split-digits"), ("hywu", "inverse-digits")])
def test_continual_evaluation_changes_no_result(tmp_path, curved, strategy, scenario):
    """Same accuracy matrix, bit for bit, with and without it (HY-WU on a stream with condition tokens)."""
    with_curve = curved[1] if strategy == "replay" else run(spec_for(strategy, scenario), tmp_path / "on")
    without = run(spec_for(strategy, scenario, every=0), tmp_path / "off")
    assert np.array_equal(with_curve.R, without.R)
    assert not (without.path / results.CURVE).exists() and "min_acc" not in without.metrics


class StopAfter(LogReporter):
    def experience(self, experience, accuracies, seconds):
        if experience == 2:  # three of five experiences done and checkpointed
            raise KeyboardInterrupt


def test_the_curve_survives_a_resume(tmp_path, curved):
    spec = spec_for("replay")
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path, reporter=StopAfter())
    path = results.run_dir(tmp_path, "split-digits", "replay", 0)
    partial = results.curve_from_csv(path / results.CURVE)
    assert partial[1].max() == 2 and not results.is_complete(path)
    resumed = run(spec, tmp_path, resume=True)
    reference = curved[1]
    for got, want in zip(results.curve_from_csv(resumed.path / results.CURVE),
                         results.curve_from_csv(reference.path / results.CURVE)):
        np.testing.assert_array_equal(got, want)
    assert json.loads((resumed.path / "metrics.json").read_text())["min_acc"] == reference.metrics["min_acc"]


def test_an_offline_strategy_ignores_eval_every(tmp_path, caplog):
    record = run(spec_for("joint"), tmp_path)
    assert "eval_every=3 ignored" in caplog.text
    assert not (record.path / results.CURVE).exists() and math.isnan(record.metrics.get("min_acc", math.nan))


def test_the_stability_gap_figure_is_drawn_from_stored_curves(curved, tmp_path):
    out, _ = curved
    loaded = tables.load(out)
    assert set(loaded.curves["exp"]) == set(range(5))
    assert (loaded.curves["experience"] >= 0).all() and loaded.curves["acc"].between(0, 1).all()
    drawn = figures.scenario_figures(loaded, "split-digits")
    assert "stability_gap" in drawn
    fig = drawn["stability_gap"]
    ax = fig.axes[0]
    assert len(ax.lines) == 5 + 4  # one line per experience, one dotted boundary between each pair
    figures.save(fig, tmp_path / "gap", ("png",), dpi=40)
