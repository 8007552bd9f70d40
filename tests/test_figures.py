"""Every figure renders, on fabricated results and on a real short run of split-digits, as PNG and PDF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hywu_bench import figures, tables

STRATEGIES = ["naive", "joint", "replay", "ewc", "hywu"]
T = 4


def fabricated() -> tables.Loaded:
    """Long frames as `tables.load` returns them: 5 methods x 2 seeds x 4 experiences, probes, projections."""
    rng = np.random.default_rng(0)
    rows, probes, points = [], [], []
    for k, strategy in enumerate(STRATEGIES):
        for seed in (0, 1):
            R = np.tril(rng.uniform(0.3, 1.0, (T, T)))
            if strategy == "joint":
                R[:-1] = np.nan
                R[-1] = rng.uniform(0.8, 1.0, T)
            costs = {"train_seconds": 5.0 + k, "samples_per_second": 1000.0, "trainable_parameters": 1000 * (k + 1),
                     "stored_memory_bytes": [0, 0, 40_000, 3_000_000, 120_000][k]}
            rows += [{"scenario": "toy", "strategy": strategy, "seed": seed, "after": i, "exp": j, "acc": R[i, j],
                      "before": 0.1, "exp_label": f"{2 * j},{2 * j + 1}", **costs}
                     for i in range(T) for j in range(T)]
            cos = np.clip(rng.normal(0, 0.4, (T, T)), -1, 1)
            cos = (cos + cos.T) / 2
            np.fill_diagonal(cos, 1.0)
            kinds = ["gradient_conflict"] + (["operator_separation", "gradient_conflict_updates"]
                                             if strategy == "hywu" else [])
            probes += [{"scenario": "toy", "strategy": strategy, "seed": seed, "kind": kind, "i": i, "j": j,
                        "value": cos[i, j]} for kind in kinds for i in range(T) for j in range(T)]
            if strategy == "hywu":
                points += [{"scenario": "toy", "strategy": strategy, "seed": seed, "exp": e,
                            "pc1": rng.normal(e, 0.3), "pc2": rng.normal(-e, 0.3)} for e in range(T) for _ in range(20)]
    return tables.Loaded(pd.DataFrame(rows), pd.DataFrame(probes), pd.DataFrame(points))


FIGURES = [
    ("accuracy_matrices", lambda d: figures.accuracy_matrices(d.frame)),
    ("accuracy_over_stream", lambda d: figures.accuracy_over_stream(d.frame)),
    ("accuracy_vs_forgetting", lambda d: figures.accuracy_vs_forgetting(d.frame)),
    ("forgetting_bars", lambda d: figures.forgetting_bars(d.frame)),
    ("step_interference", lambda d: figures.step_interference(d.frame)),
    ("accuracy_vs_memory", lambda d: figures.accuracy_vs_memory(d.frame)),
    ("gradient_conflict", lambda d: figures.cosine_heatmaps(d.probes, "gradient_conflict")),
    ("operator_separation", lambda d: figures.cosine_heatmaps(d.probes, "operator_separation")),
    ("update_projection", lambda d: figures.update_projection(d.projections)),
]


@pytest.mark.parametrize("name,draw", FIGURES, ids=[n for n, _ in FIGURES])
def test_every_figure_renders_on_fabricated_results(name: str, draw, tmp_path: Path) -> None:
    fig = draw(fabricated())
    assert isinstance(fig, Figure)
    assert fig.axes and all(ax.get_title() or not ax.get_visible() for ax in fig.axes if ax.get_label() != "<colorbar>")
    formats = ("png", "pdf") if name == "accuracy_over_stream" else ("png",)  # PDF once: it is slow
    paths = figures.save(fig, tmp_path / name, formats, dpi=60)
    assert paths[0].stat().st_size > 2_000
    assert len(paths) == 1 or paths[1].read_bytes().startswith(b"%PDF")


def test_scenario_figures_make_every_figure_the_data_allows() -> None:
    names = set(figures.scenario_figures(fabricated(), "toy"))
    assert names == {n for n, _ in FIGURES} | {"gradient_conflict_updates"}


def test_methods_keep_one_style_and_hywu_stands_out() -> None:
    styles = figures.method_styles(STRATEGIES)
    assert list(styles)[-1] == "hywu" and styles["hywu"]["color"] == "#D55E00"
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == len(STRATEGIES)
    assert styles["joint"]["linestyle"] == "--"  # references are dashed
    many = figures.method_styles([f"m{k}" for k in range(12)])
    assert len({(s["color"], s["marker"]) for s in many.values()}) == 12


def test_a_frame_with_two_scenarios_needs_a_choice() -> None:
    data = fabricated()
    both = pd.concat([data.frame, data.frame.assign(scenario="other")])
    with pytest.raises(ValueError, match="2 scenarios"):
        figures.accuracy_matrices(both)
    assert isinstance(figures.accuracy_matrices(both, scenario="other"), Figure)
    with pytest.raises(ValueError, match="no results for scenario 'missing'"):
        figures.forgetting_bars(both, scenario="missing")


def test_every_figure_renders_on_a_real_short_run(tmp_path: Path) -> None:
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import run

    for strategy in ("naive", "joint"):  # a stream and an offline reference (final row only)
        run(resolve_spec(flags={"scenario": "split-digits", "strategy": strategy, "epochs": 1, "device": "cpu"}),
            tmp_path)
    made = figures.scenario_figures(tables.load(tmp_path), "split-digits")
    # The runner stores interference probes with every run, so the gradient-conflict figure is drawn too.
    assert set(made) == {"accuracy_matrices", "accuracy_over_stream", "accuracy_vs_forgetting",
                            "forgetting_bars", "step_interference", "accuracy_vs_memory", "gradient_conflict"}
    for name, fig in made.items():
        assert figures.save(fig, tmp_path / name, ("png",), dpi=40)[0].stat().st_size > 0


def runs_frame(memory: dict[str, tuple[str, int, float]], seeds: tuple[int, ...] = (0, 1, 2)) -> pd.DataFrame:
    """A long frame of two-experience runs: name -> (base, stored bytes, final accuracy), options by name."""
    rows = []
    for name, (base, stored, acc) in memory.items():
        for seed in seeds:
            R = np.array([[0.9, 0.0], [acc + 0.01 * seed, acc - 0.01 * seed]])
            rows += [{"scenario": "toy", "strategy": name, "seed": seed, "after": i, "exp": j, "acc": R[i, j],
                      "before": 0.1, "exp_label": f"exp {j}", "stored_memory_bytes": stored, "base": base,
                      "options": json.dumps({"mem_size": int(name.rpartition("size")[2])}) if "size" in name else None}
                     for i in range(2) for j in range(2)]
    return pd.DataFrame(rows)


def test_the_memory_figure_draws_variants_as_a_frontier_line_and_other_methods_as_points() -> None:
    frame = runs_frame({"naive": ("naive", 0, 0.2), "joint": ("joint", 0, 0.95), "ewc": ("ewc", 3_000_000, 0.3),
                        "replay-mem_size50": ("replay", 13_000, 0.4), "replay-mem_size200": ("replay", 52_000, 0.5),
                        "replay-mem_size1000": ("replay", 260_000, 0.7), "hywu": ("hywu", 1_300_000, 0.6)})
    fig = figures.accuracy_vs_memory(frame)
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    assert set(bars) == {"naive", "ewc", "hywu", "replay, by mem_size"}  # joint is a reference: a line
    line = bars["replay, by mem_size"].lines[0]
    assert line.get_linestyle() == "-" and list(line.get_xdata()) == [13_000, 52_000, 260_000]
    assert [round(y, 6) for y in line.get_ydata()] == [40.0, 50.0, 70.0]  # ACC in %
    for name in ("naive", "ewc", "hywu"):
        assert len(bars[name].lines[0].get_xdata()) == 1 and bars[name].lines[0].get_linestyle() == "None"
    assert bars["hywu"].has_yerr
    joint = [ln for ln in ax.get_lines() if ln.get_label() == "joint† (bound)"]
    assert len(joint) == 1 and joint[0].get_ydata()[0] == pytest.approx(95.0)
    assert [t.get_text() for t in ax.texts] == ["50", "200", "1000"]


def test_a_method_with_one_memory_size_is_a_point_even_with_variants_at_equal_bytes() -> None:
    frame = runs_frame({"replay-mem_size200": ("replay", 52_000, 0.5), "replay-seed_buffer": ("replay", 52_000, 0.6),
                        "hywu": ("hywu", 1_300_000, 0.6)})
    labels = {c.get_label() for c in figures.accuracy_vs_memory(frame).axes[0].containers}
    assert labels == {"replay-mem_size200", "replay-seed_buffer", "hywu"}


def test_static_generated_updates_get_no_projection_panel() -> None:
    data = fabricated()
    rng = np.random.default_rng(1)
    lora = [{"scenario": "toy", "strategy": "lora", "seed": seed, "exp": e, "pc1": 0.4 + 1e-10 * rng.normal(),
             "pc2": 1e-10 * rng.normal()} for seed in (0, 1) for e in range(T) for _ in range(20)]
    projections = pd.concat([data.projections, pd.DataFrame(lora)], ignore_index=True)
    assert figures.static_updates(projections) == ["lora"]
    fig = figures.update_projection(projections)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["hywu (seed 0)"]
    only_static = tables.Loaded(data.frame, data.probes, pd.DataFrame(lora))
    assert "update_projection" not in figures.scenario_figures(only_static, "toy")
