"""Probe figures: cosine heatmaps (gradient conflict, operator separation) and the generated updates' PCA."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from hywu_bench import tables
from hywu_bench.figures._style import MARKERS, METHOD_COLOURS, _grid, _heatmaps, _mean_matrix, _one_scenario, styled


@styled
def cosine_heatmaps(probes: pd.DataFrame, kind: str = "gradient_conflict_shared_lora",
                    scenario: str | None = None) -> Figure:
    """Cosine between every pair of experiences (gradient conflict or operator separation), mean over seeds."""
    sub, scenario = _one_scenario(probes[probes["kind"] == kind], scenario) if len(probes) else (probes, scenario)
    if sub.empty:
        raise ValueError(f"no '{kind}' probes stored for this scenario")
    panels = [(name, _mean_matrix(sub[sub["strategy"] == name], "value", "i", "j"))
              for name in tables.order_strategies(sub["strategy"])]
    title = tables.PROBE_TITLES.get(kind, kind)
    fig = _heatmaps(panels, "RdBu_r", -1, 1, lambda v: f"{v:.2f}".replace("0.", ".").replace("-.", "−."),
                    "experience", "experience", "cosine similarity")
    fig.suptitle(f"{title} on {scenario}")
    return fig


STATIC_VARIANCE = 1e-12  # projected updates spread less than this (std ~1e-6): the same update for everyone


def static_updates(projections: pd.DataFrame) -> list[str]:
    """Methods whose generated updates do not vary between instances (one shared adapter, as LoRA's): on
    every seed the total variance of their projected points is below STATIC_VARIANCE, so a PCA of them
    would only show floating-point noise (about 1e-20 for LoRA, against about 0.2 for HY-WU)."""
    static = []
    for name, sub in projections.groupby("strategy", sort=False):
        spread = sub.groupby("seed")[["pc1", "pc2"]].var(ddof=0).sum(axis=1)
        if (spread.fillna(0.0) < STATIC_VARIANCE).all():
            static.append(name)
    return static


@styled
def update_projection(projections: pd.DataFrame, scenario: str | None = None,
                      labels: list[str] | None = None) -> Figure:
    """Generated updates projected on their first two principal components, coloured by experience (one
    seed); methods whose updates are static (`static_updates`) get no panel."""
    sub, scenario = _one_scenario(projections, scenario)
    static = set(static_updates(sub))
    methods = [n for n in tables.order_strategies(sub["strategy"]) if n not in static]
    if not methods:
        raise ValueError(f"every method's generated updates are static on {scenario} ({', '.join(sorted(static))})")
    fig, axes = _grid(len(methods), ncols=3, panel=2.2)
    experiences = sorted(sub["exp"].unique())
    for ax, name in zip(axes, methods):
        run = sub[sub["strategy"] == name]
        run = run[run["seed"] == run["seed"].min()]
        for k, exp in enumerate(experiences):
            points = run[run["exp"] == exp]
            label = labels[exp] if labels and exp < len(labels) else f"exp {exp}"
            ax.scatter(points["pc1"], points["pc2"], s=14, color=METHOD_COLOURS[k % len(METHOD_COLOURS)],
                       marker=MARKERS[k % len(MARKERS)], label=label, alpha=0.8, linewidths=0)
        ax.set_title(f"{name} (seed {int(run['seed'].min())})")
        for axis, pc in ((ax.xaxis, 1), (ax.yaxis, 2)):
            share = run[f"ev{pc}"].iloc[0] if f"ev{pc}" in run and len(run) else float("nan")
            axis.set_label_text(f"PC {pc}" + ("" if pd.isna(share) else f" ({100 * share:.0f}% of variance)"))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", frameon=False, title="experience")
    fig.suptitle(f"Generated updates, 2-D PCA, on {scenario}")
    return fig
