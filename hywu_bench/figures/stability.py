"""The stability-gap figure: accuracy on earlier experiences across training iterations (continual evaluation)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from hywu_bench import tables
from hywu_bench.figures._style import METHOD_COLOURS, _grid, _one_scenario, styled


@styled
def stability_gap(curves: pd.DataFrame, scenario: str | None = None) -> Figure:
    """Continual evaluation (runs with eval_every > 0): accuracy on each earlier experience across training
    iterations, from the end of its own training (its boundary evaluation) on, one panel per method, mean
    over seeds. Dotted lines mark the experience boundaries; a dip just after one that recovers later is
    the stability gap (De Lange et al. 2023)."""
    sub, scenario = _one_scenario(curves, scenario)
    methods = tables.order_strategies(sub["strategy"])
    fig, axes = _grid(len(methods), ncols=2, panel=2.6)
    for ax, name in zip(axes, methods):
        run = sub[sub["strategy"] == name]
        seeds = sorted(run["seed"].unique())
        learnt = run.groupby(["seed", "experience"])["iteration"].max()  # each experience's boundary row
        for j in sorted(run["exp"].unique()):
            rows = run[run["exp"] == j]
            ends = learnt.xs(j, level="experience").reindex(rows["seed"]).to_numpy()
            mean = 100 * rows[rows["iteration"].to_numpy() >= ends].groupby("iteration")["acc"].mean()
            if mean.empty:
                continue
            ax.plot(mean.index, mean.values, color=METHOD_COLOURS[j % len(METHOD_COLOURS)], linewidth=1.1,
                    label=f"experience {j}", zorder=3)
        ends = learnt.xs(seeds[0], level="seed")
        for k, end in ends.items():
            if k < ends.index.max():
                ax.axvline(end, color="grey", linestyle=":", linewidth=1, zorder=1)
        ax.set_title(f"{name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
        ax.set_ylim(-3, 103)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("accuracy (%)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", frameon=False, title="test experience")
    fig.suptitle(f"Continual evaluation on {scenario} (dotted: experience boundaries)")
    return fig
