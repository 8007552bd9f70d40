"""Accuracy figures: matrices, accuracy over the stream, accuracy vs forgetting, forgetting bars, step interference."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hywu_bench import ranking, tables
from hywu_bench.figures._style import (
    HIGHLIGHT,
    _ci,
    _exp_labels,
    _grid,
    _heatmaps,
    _mean_matrix,
    _one_scenario,
    _per_run,
    _within,
    method_styles,
    styled,
)


@styled
def accuracy_matrices(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """R[i, j] (accuracy on experience j after training i), mean over seeds, one heatmap per method."""
    frame, scenario = _one_scenario(frame, scenario)
    methods = tables.order_strategies(frame["strategy"])
    panels = [(name, 100 * _mean_matrix(frame[frame["strategy"] == name])) for name in methods]
    T = panels[0][1].shape[0]
    fig = _heatmaps(panels, "viridis", 0, 100, lambda v: str(int(round(v))), "test experience", "after training",
                    "accuracy (%)", [str(j) for j in range(T)])
    fig.suptitle(f"Accuracy matrices on {scenario} (mean over seeds)")
    return fig


@styled
def accuracy_over_stream(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """Accuracy on each experience over the stream, one panel per experience, methods as lines.

    The first panel is the average over the experiences seen so far. Bands are +-1 std over seeds; the
    dotted line marks when the panel's experience was learnt.
    """
    frame, scenario = _one_scenario(frame, scenario)
    T = int(frame["exp"].max()) + 1
    labels = _exp_labels(frame)
    styles = method_styles(frame["strategy"], ranking.frame_methods(frame))
    frame = frame[frame["exp"] <= frame["after"]]  # before it is learnt, an experience's accuracy is noise here
    seen = frame.groupby(tables.KEYS + ["after"], as_index=False)["acc"].mean()
    panels = [("average over seen", seen, None)] + [
        (f"experience {j} ({labels[j]})" if labels[j] != f"exp {j}" else f"experience {j}", frame[frame["exp"] == j], j)
        for j in range(T)]
    fig, axes = _grid(len(panels), ncols=3, panel=2.0)
    for ax, (title, sub, learnt) in zip(axes, panels):
        for name, style in styles.items():
            per_seed = sub[sub["strategy"] == name].groupby("after")["acc"]
            mean, std = 100 * per_seed.mean(), 100 * per_seed.std(ddof=1).fillna(0)
            if mean.empty:
                continue
            ax.plot(mean.index, mean.values, label=name, color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"], linewidth=style["linewidth"], zorder=style["zorder"], markersize=3.5)
            ax.fill_between(mean.index, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
        if learnt is not None:
            ax.axvline(learnt, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_ylim(-3, 103)
        ax.set_xticks(range(T))
        ax.set_xlabel("after training experience")
        ax.set_ylabel("accuracy (%)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 7), frameon=False)
    fig.suptitle(f"Accuracy over the stream on {scenario}")
    return fig


@styled
def accuracy_vs_forgetting(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """Final average accuracy against average max-forgetting, mean and 95% CI over seeds (up and left is better)."""
    frame, scenario = _one_scenario(frame, scenario)
    runs = _per_run(frame)
    styles = method_styles(runs["strategy"], ranking.frame_methods(runs))
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.subplots()
    for name, style in styles.items():
        sub = runs[runs["strategy"] == name]
        acc, forg = 100 * sub["acc"], 100 * sub["forgetting"]
        if forg.isna().all():  # offline references (joint) have no forgetting: a horizontal line
            ax.axhline(acc.mean(), color=style["color"], linestyle="--", linewidth=1, label=f"{name} (no stream)")
            continue
        ax.errorbar(forg.mean(), acc.mean(), xerr=_ci(forg), yerr=_ci(acc), color=style["color"],
                    marker=style["marker"], markersize=7 if name == HIGHLIGHT else 6, capsize=2, linestyle="none",
                    label=name, zorder=style["zorder"], alpha=0.9)
    ax.set_xlabel("average max-forgetting (%), lower is better")
    ax.set_ylabel("final average accuracy (%)")
    _within(ax.set_xlim, ax.get_xlim(), -100, 100)
    _within(ax.set_ylim, ax.get_ylim(), 0, 100)
    ax.set_title(f"Accuracy vs forgetting on {scenario}")
    fig.legend(loc="outside right center", frameon=False)
    return fig


@styled
def forgetting_bars(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """Average max-forgetting per method: bars at the mean, 95% CI error bars, one dot per seed."""
    frame, scenario = _one_scenario(frame, scenario)
    runs = _per_run(frame)
    info = ranking.frame_methods(runs)
    styles = method_styles(runs["strategy"], info)
    fig = Figure(figsize=(max(3.2, 0.5 * len(styles) + 1.2), 3.0), layout="constrained")
    ax = fig.subplots()
    for x, (name, style) in enumerate(styles.items()):
        values = 100 * runs.loc[runs["strategy"] == name, "forgetting"].dropna()
        if values.empty:
            ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
            continue
        ax.bar(x, values.mean(), color=style["color"], alpha=0.85, yerr=_ci(values), capsize=3, width=0.7,
               hatch=None if info[name].ranked else "//", edgecolor="black", linewidth=0.5,
               error_kw={"ecolor": "#777777", "elinewidth": 1.2})  # grey: visible on dark bars too
        ax.scatter(np.full(len(values), x) + np.linspace(-0.15, 0.15, len(values)), values, s=12, color="black",
                   edgecolors="white", linewidths=0.6, zorder=4)
    ax.set_xticks(range(len(styles)), list(styles), rotation=45, ha="right")
    ax.set_ylabel("average max-forgetting (%)")
    _within(ax.set_ylim, ax.get_ylim(), -100, 100)
    ax.set_title(f"Forgetting on {scenario} (lower is better)")
    ax.grid(axis="x", visible=False)
    return fig


@styled
def step_interference(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """I[i, j] = R[i-1, j] - R[i, j] in points (red: learning i hurt j), mean over seeds, one panel per method."""
    frame, scenario = _one_scenario(frame, scenario)
    table = tables.step_interference_table(frame).reset_index()
    T = int(frame["exp"].max()) + 1
    panels = []
    for name in tables.order_strategies(table["strategy"]):
        M = np.full((T, T), np.nan)
        for row in table[table["strategy"] == name].itertuples():
            M[row.i, row.j] = 100 * row.mean
        if not np.isnan(M).all():  # offline references have no steps
            panels.append((name, M[1:, :-1]))
    limit = max(5.0, float(np.nanmax(np.abs([p[1] for p in panels])))) if panels else 100
    fig = _heatmaps(panels, "RdBu_r", -limit, limit, lambda v: str(int(round(v))), "hurt experience j",
                    "training experience i", "accuracy lost (points)", [str(j) for j in range(T - 1)],
                    [str(i) for i in range(1, T)])
    fig.suptitle(f"Step interference on {scenario} (mean over seeds)")
    return fig
