"""Accuracy against stored memory: rehearsal frontiers as lines, other methods as points, references as bounds."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from hywu_bench import ranking, stats, tables
from hywu_bench.figures._style import (
    HIGHLIGHT,
    _grid,
    _one_scenario,
    _per_run,
    _within,
    method_styles,
    styled,
)


def _variant_labels(names: list[str], runs: pd.DataFrame, base: str) -> tuple[str, dict[str, str]]:
    """What tells a base's variants apart, for the legend and per point: the one option that differs
    ("mem_size", then "500" at a point), several ("mem_size=500, k=2"), else the run name without its base;
    "(over)"/"(under)" when a seed missed its memory budget."""
    options = {}
    for name in names:
        stored = runs.loc[runs["strategy"] == name, "options"].dropna() if "options" in runs else pd.Series()
        options[name] = json.loads(stored.iloc[0]) if len(stored) else {}
    keys = sorted({k for o in options.values() for k in o})
    differ = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in options.values()}) > 1]
    out = {}
    for name in names:
        if len(differ) == 1:
            text = str(options[name].get(differ[0]))
        else:
            text = ", ".join(f"{k}={options[name].get(k)}" for k in differ) or name.removeprefix(base + "-") or name
        status = (ranking.budget_status(runs.loc[runs["strategy"] == name, "budget_status"])
                  if "budget_status" in runs else "")
        out[name] = text + (f" ({status.split()[0]})" if status.startswith(("over", "under")) else "")
    return (f"{base}, by {differ[0]}" if len(differ) == 1 else f"{base} ({len(names)} sizes)"), out


def _memory_layout(runs: pd.DataFrame) -> tuple[dict[str, list[str]], list[str], dict[str, ranking.Method]]:
    """(frontier base -> its variants by bytes, the display keys in order, Methods). A base whose ranked
    variants (two or more) store different numbers of bytes is a frontier; every other run name a point."""
    info = ranking.frame_methods(runs)
    names = tables.order_strategies(runs["strategy"], info)
    memory = runs.groupby("strategy")["stored_memory_bytes"].mean()
    frontiers = {}
    for base in dict.fromkeys(info[n].base for n in names):
        group = [n for n in names if info[n].base == base and info[n].role != "reference"]
        if len(group) >= 2 and memory[group].nunique() >= 2:
            frontiers[base] = sorted(group, key=lambda n: (memory[n], n))
    keys = list(dict.fromkeys(info[n].base if info[n].base in frontiers else n for n in names))
    return frontiers, keys, {**ranking.methods(keys), **info}


LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0}


def _memory_panel(ax: Any, runs: pd.DataFrame, styles: dict[str, dict[str, Any]], most_ticks: int = 5) -> None:
    """One scenario's frontiers (lines), points and references (dashed lines with their CI band)."""
    frontiers, keys, info = _memory_layout(runs)
    per_name = {name: (sub["stored_memory_bytes"].mean(), stats.mean_ci(100 * sub["acc"].to_numpy(dtype=float)))
                for name, sub in runs.groupby("strategy", sort=False)}
    nonzero = [x for x, _ in per_name.values() if x > 0]
    floor = 10 ** (math.floor(math.log10(min(nonzero))) - 1) if nonzero else 1.0
    at_zero = len(nonzero) < len(per_name)  # a method storing nothing sits at "0", left of the log axis

    def err(ci: stats.MeanCI) -> float:
        return 0.0 if math.isnan(ci.half_width) else ci.half_width

    for key in keys:
        style = styles[key]
        members = frontiers.get(key, [key])
        xs = [per_name[n][0] if per_name[n][0] > 0 else floor for n in members]
        cis = [per_name[n][1] for n in members]
        mark = ranking.MARKS[info[key].role]
        if info[key].role == "reference":  # trained offline on everything: a bound, not a point on the axis
            ax.axhline(cis[0].mean, color=style["color"], linestyle="--", linewidth=1, label=f"{key}{mark} (bound)")
            if not math.isnan(cis[0].lo):
                ax.axhspan(cis[0].lo, cis[0].hi, color=style["color"], alpha=0.08, linewidth=0)
            continue
        legend, texts = _variant_labels(members, runs, key) if key in frontiers else (key + mark, {})
        ax.errorbar(xs, [c.mean for c in cis], yerr=[err(c) for c in cis], color=style["color"],
                    marker=style["marker"], markersize=6 if key != HIGHLIGHT else 8, capsize=2, label=legend,
                    linestyle="-" if key in frontiers else "none", linewidth=style["linewidth"],
                    zorder=style["zorder"], mfc="white" if info[key].role == "oracle" else style["color"])
        for k, (name, x, ci) in enumerate(zip(members, xs, cis)):
            if name in texts:  # alternately below and above: neighbours on a frontier do not collide
                ax.annotate(texts[name], (x, ci.mean), xytext=(5, 4 if k % 2 else -10), textcoords="offset points",
                            fontsize=6, color=style["color"], zorder=6, bbox=LABEL_BOX)
    at = ranking.budget(runs)
    if at:
        ax.axvline(at, color="grey", linestyle=":", linewidth=1, label="memory budget")
    top = max([floor, at or 0] + nonzero)
    left = floor if at_zero else min(nonzero + ([at] if at else []))
    ticks = _byte_ticks(left / 2 if at_zero else left / 2.5, top * 2, most_ticks, min_step=1 if most_ticks > 3 else 4)
    ax.set_xscale("log")
    ax.set_xticks(([floor] if at_zero else []) + ticks, (["0"] if at_zero else []) + [_bytes_label(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(left / 2.5, top * 2.5)
    ax.set_xlabel("stored memory (bytes, log scale)")
    ax.set_ylabel("final average accuracy (%)")
    _within(ax.set_ylim, ax.get_ylim(), 0, 100)


def _memory_styles(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Every run name's style as in the other figures; a frontier takes its base's, else its first variant's."""
    styles = method_styles(runs["strategy"], ranking.frame_methods(runs))
    for _, sub in runs.groupby("scenario", sort=False):
        for base, members in _memory_layout(sub)[0].items():
            styles.setdefault(base, styles[members[0]])
    return styles


@styled
def accuracy_vs_memory(frame: pd.DataFrame, scenario: str | None = None) -> Figure:
    """Final average accuracy (mean, 95% CI error bars) against the bytes a method stores between experiences
    (log scale; 0 at the left). A base strategy run at several memory sizes (replay at several buffer sizes)
    is a frontier line, every other method a point: above the line it beats rehearsal at its own memory.
    References (joint, cumulative training) are dashed horizontal lines with their CI band."""
    frame, scenario = _one_scenario(frame, scenario)
    runs = _per_run(frame)
    fig = Figure(figsize=(5.4, 3.6), layout="constrained")
    ax = fig.subplots()
    _memory_panel(ax, runs, _memory_styles(runs))
    ax.set_title(f"Accuracy vs stored memory on {scenario}")
    fig.legend(loc="outside right center", frameon=False)
    return fig


@styled
def memory_frontiers(frame: pd.DataFrame) -> Figure:
    """`accuracy_vs_memory` for every scenario of the frame, a panel each, one legend below."""
    scenarios = list(dict.fromkeys(frame["scenario"]))
    runs = _per_run(frame)
    styles = _memory_styles(runs)
    fig, axes = _grid(len(scenarios), ncols=3, panel=2.6 if len(scenarios) > 1 else 3.6, extra_w=0.2)
    for ax, scenario in zip(axes, scenarios):
        _memory_panel(ax, runs[runs["scenario"] == scenario], styles, 5 if len(scenarios) == 1 else 3)
        ax.set_title(scenario)
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(len(legend), 4),
               frameon=False)
    fig.suptitle("Final accuracy against stored memory (95% CI over seeds)")
    return fig


def _bytes_label(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def _byte_ticks(low: float, high: float, most: int = 5, min_step: int = 1) -> list[float]:
    """Powers of two between low and high, thinned to at most `most` (and at least `min_step` doublings
    apart, for narrow panels), preferring whole KiB/MiB/GiB."""
    powers = [2.0**n for n in range(0, 41) if low <= 2.0**n <= high]
    for step in (s for s in (1, 2, 3, 4, 5, 10) if s >= min_step):
        chosen = [p for p in powers if round(math.log2(p)) % step == 0]
        if len(chosen) <= most:
            return chosen
    return powers[:: max(1, len(powers) // most)]
