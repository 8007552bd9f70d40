"""Tables from fabricated stored runs equal hand-computed numbers; broken runs are skipped by name; no torch."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hywu_bench import interference, results, tables
from hywu_bench.cli import app


def fabricate(out: Path, strategy: str, seed: int, R: list[list[float]], before: list[float], *,
              scenario: str = "split-toy", costs: dict | None = None, probe: dict | None = None,
              base: dict | None = None) -> Path:
    """A complete run folder as the runner writes it (config, matrix, metrics, COMPLETE); `base`: the
    config's "strategy" entry (name, options, role), which older runs lack."""
    path = results.run_dir(out, scenario, strategy, seed)
    R, before = np.array(R, dtype=float), np.array(before, dtype=float)
    T = R.shape[0]
    config = {"format_version": 1, "run_name": strategy,
              "spec": {"scenario": scenario, "strategy": strategy, "seed": seed},
              "scenario": {"experiences": [{"label": f"{2 * j},{2 * j + 1}"} for j in range(T)]}}
    if base is not None:
        config["strategy"] = base
    results.atomic_write_json(path / "config.json", config)
    results.atomic_write_text(path / "accuracy_matrix.csv", results.matrix_to_csv(before, R))
    metrics = {"train_seconds": 10.0 + seed, "samples_per_second": 1000.0 * (seed + 1),
               "trainable_parameters": 5000, "stored_memory_bytes": 2048, **(costs or {})}
    results.atomic_write_json(path / "metrics.json", metrics)
    if probe is not None:
        interference.save(path / tables.INTERFERENCE_FILE, probe)
    results.atomic_write_text(path / results.COMPLETE, "now\n")
    return path


# Two experiences. For R = [[a, x], [c, d]] and b = [b0, b1]:
# ACC = (c + d) / 2, learning = (a + d) / 2, BWT = c - a, forgetting = a - c, FWT = x - b1.
RUNS = {
    ("naive", 0): [[0.8, 0.0], [0.2, 0.9]],
    ("naive", 1): [[0.6, 0.1], [0.4, 0.7]],
    ("replay", 0): [[0.8, 0.0], [0.6, 0.8]],
    ("replay", 1): [[0.8, 0.2], [0.7, 0.9]],
    ("replay", 2): [[0.9, 0.1], [0.8, 1.0]],
}
BEFORE = [0.1, 0.05]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    for (strategy, seed), R in RUNS.items():
        fabricate(tmp_path, strategy, seed, R, BEFORE)
    return tmp_path


def test_forgetting_table_equals_hand_computed_means_and_stds(store: Path) -> None:
    table = tables.forgetting_table(tables.load(store).frame).loc["split-toy"]
    # naive: ACC 0.55 and 0.55; learning 0.85 and 0.65; BWT -0.6 and -0.2; FWT -0.05 and 0.05.
    assert table.at["naive", "acc_mean"] == pytest.approx(0.55)
    assert table.at["naive", "acc_std"] == pytest.approx(0.0, abs=1e-12)
    assert table.at["naive", "learning_acc_mean"] == pytest.approx(0.75)
    assert table.at["naive", "learning_acc_std"] == pytest.approx(np.sqrt(0.02))  # values 0.85, 0.65
    assert table.at["naive", "bwt_mean"] == pytest.approx(-0.4)
    assert table.at["naive", "forgetting_mean"] == pytest.approx(0.4)
    assert table.at["naive", "forgetting_std"] == pytest.approx(np.sqrt(0.08))  # values 0.6, 0.2
    assert table.at["naive", "fwt_mean"] == pytest.approx(0.0)
    # replay: ACC 0.7, 0.8, 0.9 -> mean 0.8, sample std 0.1; forgetting 0.2, 0.1, 0.1.
    assert table.at["replay", "acc_mean"] == pytest.approx(0.8)
    assert table.at["replay", "acc_std"] == pytest.approx(0.1)
    assert table.at["replay", "forgetting_mean"] == pytest.approx(0.4 / 3)
    assert table.at["replay", "forgetting_std"] == pytest.approx(np.std([0.2, 0.1, 0.1], ddof=1))
    # costs from metrics.json: train_seconds 10 + seed, samples/s 1000 (seed + 1).
    assert table.at["replay", "train_seconds_mean"] == pytest.approx(11.0)
    assert table.at["replay", "samples_per_second_std"] == pytest.approx(1000.0)
    assert table.at["naive", "trainable_parameters_mean"] == 5000
    assert table.at["replay", "n_seeds"] == 3 and table.at["naive", "n_seeds"] == 2
    assert list(table.index) == ["naive", "replay"]


def test_step_interference_and_its_summary(store: Path) -> None:
    frame = tables.load(store).frame
    matrix = tables.step_interference_table(frame).loc[("split-toy", "replay", 1, 0)]
    assert matrix["mean"] == pytest.approx(np.mean([0.2, 0.1, 0.1]))  # R[0, 0] - R[1, 0] per seed
    summary = tables.step_interference_summary(frame).loc[("split-toy", "naive")]
    assert summary["max_interference_mean"] == pytest.approx(0.4)


def test_markdown_bolds_the_best_and_the_tied_and_marks_references(tmp_path: Path) -> None:
    for (strategy, seed), R in RUNS.items():
        fabricate(tmp_path, strategy, seed, R, BEFORE)
    for seed in range(3):  # ACC 0.5 on every seed: 0.2, 0.3, 0.4 below replay, paired p = 0.035
        fabricate(tmp_path, "ewc", seed, [[0.8, 0.0], [0.4, 0.6]], BEFORE)
    fabricate(tmp_path, "joint", 0, [[np.nan, np.nan], [0.95, 0.95]], BEFORE)
    table = tables.forgetting_table(tables.load(tmp_path).frame)
    md = tables.markdown(table)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines()[2:]}
    assert rows["replay"][1].startswith("**80.0 ± 10.0** [55.2, 104.8]")  # the best ACC
    assert rows["naive"][1] == "**55.0 ± 0.0** [55.0, 55.0]"  # tied: p = 0.156 on the 2 paired seeds
    assert rows["ewc"][1] == "50.0 ± 0.0 [50.0, 50.0]"  # p = 0.035: not tied
    assert "**" not in rows["joint†"][1] and rows["joint†"][1] == "95.0"  # a reference is never bold
    assert rows["joint†"][2] == "–"  # no learning accuracy without a stream
    assert rows["naive"][-1].startswith("2.0 KiB")
    costs = tables.markdown(table, tables.COST_COLUMNS, equal_bytes=False)
    assert "5,000" in costs and "Raw inputs" not in costs  # no run recorded memory by kind


def test_latex_is_booktabs_with_math_cells(store: Path) -> None:
    tex = tables.latex(tables.forgetting_table(tables.load(store).frame), caption="Split 50% toy",
                       label="tab:toy")
    lines = tex.splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    assert r"\caption{Split 50\% toy}" in tex and r"\label{tab:toy}" in tex
    assert r"\begin{tabular}{lrrrrrrrr}" in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"Method & ACC (\%) & Learning acc. (\%) & BWT (\%) & Forgetting (\%) & FWT (\%) & AIA (\%)" in tex
    replay = next(line for line in lines if line.startswith("replay &"))
    cells = [c.strip() for c in replay.removesuffix(r"\\").split("&")]
    assert cells[1] == r"$\mathbf{80.0 \pm 10.0}$ {\scriptsize $[55.2, 104.8]$}"
    assert cells[8] == r"$2.0\,\mathrm{KiB}$"
    assert replay.endswith(r" \\")
    costs = tables.latex(tables.forgetting_table(tables.load(store).frame), tables.COST_COLUMNS)
    assert "$5{,}000$" in costs


def test_latex_escapes_names_and_daggers_references(tmp_path: Path) -> None:
    fabricate(tmp_path, "my_method", 0, [[0.5, 0.0], [0.4, 0.6]], BEFORE)
    fabricate(tmp_path, "cumulative", 0, [[0.5, 0.0], [0.5, 0.6]], BEFORE)
    tex = tables.latex(tables.forgetting_table(tables.load(tmp_path).frame))
    assert r"my\_method & " in tex and r"cumulative$^\dagger$ & " in tex


def test_probe_tables_from_stored_interference(tmp_path: Path) -> None:
    probe = {"format_version": 1, "gradient_conflict": [[1.0, -0.3], [-0.3, 1.0]],
             "operator_separation": [[1.0, 0.2], [0.2, 1.0]],
             "update_projection": {"points": [[0.0, 1.0], [1.0, 0.0]], "experience": [0, 1]}}
    fabricate(tmp_path, "hywu", 0, RUNS[("naive", 0)], BEFORE, probe=probe)
    fabricate(tmp_path, "hywu", 1, RUNS[("naive", 1)], BEFORE,
              probe={**probe, "gradient_conflict": [[1.0, -0.1], [-0.1, 1.0]]})
    loaded = tables.load(tmp_path)
    summary = tables.probe_summary(loaded.probes, "gradient_conflict").loc[("split-toy", "hywu")]
    assert summary["mean_cosine_mean"] == pytest.approx(-0.2)
    assert summary["negative_share_mean"] == pytest.approx(1.0)
    assert len(loaded.projections) == 4
    made = tables.scenario_tables(loaded, "split-toy")
    assert set(made) == {"forgetting", "costs", "step_interference", "gradient_conflict", "operator_separation"}


def test_broken_and_unfinished_runs_are_skipped_by_name(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = fabricate(store, "ewc", 0, RUNS[("naive", 0)], BEFORE)
    (broken / "accuracy_matrix.csv").write_text("row,exp0\nbefore,0.1\n")  # not square
    unfinished = fabricate(store, "si", 0, RUNS[("naive", 0)], BEFORE)
    (unfinished / results.COMPLETE).unlink()
    with caplog.at_level(logging.WARNING):
        loaded = tables.load(store)
    assert sorted(loaded.frame["strategy"].unique()) == ["naive", "replay"]
    assert {p for p, _ in loaded.skipped} == {broken, unfinished}
    assert str(broken) in caplog.text and str(unfinished) in caplog.text

    result = CliRunner().invoke(app, ["report", str(store)])
    assert result.exit_code == 0, result.output
    assert "skipped 2" in result.output and str(broken) in result.output
    assert (store / "REPORT.md").exists()
    assert (store / "split-toy" / "_report" / "forgetting.tex").exists()
    assert "ewc" not in (store / "split-toy" / "_report" / "forgetting.md").read_text()


def test_one_scenarios_report_loads_and_warns_about_that_scenario_only(store: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    other = fabricate(store, "naive", 0, RUNS[("naive", 0)], BEFORE, scenario="rotated-toy")
    (other / results.COMPLETE).unlink()
    with caplog.at_level(logging.WARNING):
        loaded = tables.load(store, ["split-toy"])
    assert set(loaded.frame["scenario"]) == {"split-toy"} and loaded.skipped == []
    assert str(other) not in caplog.text
    assert tables.load(store).skipped == [(other, "unfinished (no COMPLETE marker)")]


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no complete runs" in result.output


def test_report_command_imports_no_torch(store: Path) -> None:
    code = ("import sys\nfrom hywu_bench.cli import app\n"
            f"try:\n    app(['report', {str(store)!r}])\nexcept SystemExit as e:\n    assert e.code in (0, None), e\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'avalanche' not in sys.modules\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert (store / "split-toy" / "_report" / "accuracy_matrices.png").exists()
