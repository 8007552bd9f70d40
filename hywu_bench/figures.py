"""Figures from stored runs: every function takes the long-format frame(s) of `tables.load` and returns a Figure.

matplotlib's object API only (no pyplot, no global figure manager, nothing shown): a Figure is rendered
with the Agg canvas when saved. No torch import.

Style: one palette for methods throughout (Okabe & Ito 2008, safe for the common colour-vision
deficiencies), each method also with its own marker so print in grey stays readable; viridis for
accuracies and a diverging blue-red map centred on zero for signed quantities (cosines, interference).
Points and bars: means over seeds with their 95% confidence interval (Student t, `stats.mean_ci`) as error
bars; bands over the stream: +-1 std. References (joint, cumulative) and oracles are found from their role
in the strategy registry (`ranking`), never by name.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Callable

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hywu_bench import ranking, stats, tables

# Okabe-Ito: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, black.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
# Method colours: Okabe-Ito without yellow (faint on white) and vermillion (kept for HY-WU), then Paul
# Tol's wine, indigo, teal and sand: ten before a colour repeats (always with another marker).
METHOD_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#882255", "#332288", "#44AA99",
                  "#000000", "#DDCC77")
REFERENCE_COLOURS = ("#555555", "#999999", "#BBBBBB")  # joint, cumulative, oracle: dashed greys
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
HIGHLIGHT = "hywu"  # drawn last and thicker, so the method under study is never hidden
RC = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7.5, "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.4, "lines.markersize": 5,
    "savefig.bbox": "tight", "savefig.dpi": 200, "pdf.fonttype": 42, "font.family": "DejaVu Sans",
}
WIDTH = 7.0  # inches: a two-column figure; panels share it


def styled(function: Callable[..., Figure]) -> Callable[..., Figure]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(RC):
            return function(*args, **kwargs)

    return wrapper


def method_styles(names: Any, info: dict[str, ranking.Method] | None = None) -> dict[str, dict[str, Any]]:
    """A colour and marker per method, stable for a given set of methods (in report order); references and
    oracles (their registry role, or `info`'s) in dashed greys."""
    names = list(dict.fromkeys(names))
    info = {**ranking.methods(names), **(info or {})}
    ordered = [n for n in tables.order_strategies(names, info) if n != HIGHLIGHT]
    methods = [n for n in ordered if info[n].ranked]
    bounds = [n for n in ordered if not info[n].ranked]
    out = {}
    for k, name in enumerate(ordered):
        if not info[name].ranked:
            colour = REFERENCE_COLOURS[bounds.index(name) % len(REFERENCE_COLOURS)]
        else:  # beyond ten methods colours repeat, but never with the same marker
            colour = METHOD_COLOURS[methods.index(name) % len(METHOD_COLOURS)]
        out[name] = {"color": colour, "marker": MARKERS[k % len(MARKERS)],
                     "linestyle": "-" if info[name].ranked else "--", "zorder": 3, "linewidth": 1.3}
    if HIGHLIGHT in set(names):  # vermillion, thick, on top and last in legends
        out[HIGHLIGHT] = {"color": "#D55E00", "marker": "*", "linestyle": "-", "zorder": 5, "linewidth": 2.2}
    return out


def save(fig: Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf"),
         dpi: float | None = None) -> list[Path]:
    """Write `stem`.png and `stem`.pdf (or the given formats); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{ext}") for ext in formats]
    with matplotlib.rc_context(RC):
        for path in paths:
            fig.savefig(path, dpi=dpi or RC["savefig.dpi"])
    return paths


def _one_scenario(frame: pd.DataFrame, scenario: str | None) -> tuple[pd.DataFrame, str]:
    names = list(dict.fromkeys(frame["scenario"]))
    if scenario is None:
        if len(names) != 1:
            raise ValueError(f"the frame holds {len(names)} scenarios ({', '.join(map(str, names))}); pass scenario=")
        scenario = names[0]
    sub = frame[frame["scenario"] == scenario]
    if sub.empty:
        raise ValueError(f"no results for scenario '{scenario}'; present: {', '.join(map(str, names)) or 'none'}")
    return sub, scenario


def _grid(n: int, ncols: int = 4, panel: float = 1.75, extra_w: float = 0.6) -> tuple[Figure, list[Any]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    width = min(WIDTH, ncols * panel + extra_w)
    fig = Figure(figsize=(width, nrows * panel + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _exp_labels(frame: pd.DataFrame) -> list[str]:
    """Experience tick labels: the stored label when every seed agrees (e.g. same classes), else 'exp j'."""
    T = int(frame["exp"].max()) + 1
    labels = []
    for j in range(T):
        stored = set(frame.loc[frame["exp"] == j, "exp_label"]) if "exp_label" in frame else set()
        labels.append(str(stored.pop()) if len(stored) == 1 else f"exp {j}")
    return labels


def _mean_matrix(run_frame: pd.DataFrame, value: str = "acc", row: str = "after", col: str = "exp") -> np.ndarray:
    per_seed = run_frame.groupby([row, col])[value].mean().unstack(col)
    return per_seed.to_numpy(dtype=float)


def _heatmaps(panels: list[tuple[str, np.ndarray]], cmap: str, vmin: float, vmax: float, fmt: Callable[[float], str],
              xlabel: str, ylabel: str, cbar_label: str, ticks: list[str] | None = None,
              yticks: list[str] | None = None) -> Figure:
    fig, axes = _grid(len(panels), panel=1.9)
    image = None
    for ax, (title, M) in zip(axes, panels):
        image = ax.imshow(M, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title)
        ax.grid(False)
        T = M.shape[1]
        xt = (ticks or [str(j) for j in range(T)])[:T]
        ax.set_xticks(range(T), xt, rotation=45 if max(map(len, xt)) > 2 else 0)
        ax.set_yticks(range(M.shape[0]), (yticks or ticks or [str(i) for i in range(M.shape[0])])[:M.shape[0]])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if T <= 8:
            cm = matplotlib.colormaps[cmap]
            for (i, j), v in np.ndenumerate(M):
                if not np.isnan(v):
                    r, g, b, _ = cm((v - vmin) / (vmax - vmin) if vmax > vmin else 0.5)
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    ax.text(j, i, fmt(v), ha="center", va="center", fontsize=6.5,
                            color="white" if dark else "black")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=cbar_label)
    return fig


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


def _per_run(frame: pd.DataFrame) -> pd.DataFrame:
    return tables.run_metrics(frame)


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


def _within(setter: Callable[..., Any], limits: tuple[float, float], low: float, high: float) -> None:
    """Keep an axis inside a metric's possible range (a t interval over 2-3 seeds easily leaves it)."""
    margin = 0.03 * (high - low)
    setter(max(limits[0], low - margin), min(limits[1], high + margin))


def _ci(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (0 with fewer than two values)."""
    half = stats.mean_ci(values.to_numpy(dtype=float)).half_width
    return 0.0 if math.isnan(half) else half


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


# ---------------------------------------------------------------------------------------------------
# Accuracy against memory: rehearsal frontiers and methods as points


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


def scenario_figures(loaded: tables.Loaded, scenario: str) -> dict[str, Figure]:
    """Every figure the stored results of one scenario allow, by file name."""
    frame = loaded.frame[loaded.frame["scenario"] == scenario]
    if frame.empty:
        return {}
    figures = {"accuracy_matrices": accuracy_matrices(frame), "accuracy_over_stream": accuracy_over_stream(frame),
               "accuracy_vs_forgetting": accuracy_vs_forgetting(frame), "forgetting_bars": forgetting_bars(frame),
               "step_interference": step_interference(frame), "accuracy_vs_memory": accuracy_vs_memory(frame)}
    probes = loaded.probes[loaded.probes["scenario"] == scenario]
    for kind in tables.PROBE_KINDS:
        if (probes["kind"] == kind).any():
            figures[kind] = cosine_heatmaps(probes, kind)
    projections = loaded.projections[loaded.projections["scenario"] == scenario]
    if not projections.empty and set(projections["strategy"]) - set(static_updates(projections)):
        figures["update_projection"] = update_projection(projections, labels=_exp_labels(frame))
    curves = loaded.curves[loaded.curves["scenario"] == scenario]
    if not curves.empty:
        figures["stability_gap"] = stability_gap(curves)
    return figures


def write_figures(loaded: tables.Loaded, scenario: str, dest: str | Path) -> dict[str, list[Path]]:
    return {name: save(fig, Path(dest) / name) for name, fig in scenario_figures(loaded, scenario).items()}
