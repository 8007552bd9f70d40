"""Shared style and plumbing of the figures: palette, markers, rc settings, saving, panel grids, heatmaps, CIs."""

from __future__ import annotations

import functools
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


def _per_run(frame: pd.DataFrame) -> pd.DataFrame:
    return tables.run_metrics(frame)


def _within(setter: Callable[..., Any], limits: tuple[float, float], low: float, high: float) -> None:
    """Keep an axis inside a metric's possible range (a t interval over 2-3 seeds easily leaves it)."""
    margin = 0.03 * (high - low)
    setter(max(limits[0], low - margin), min(limits[1], high + margin))


def _ci(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (0 with fewer than two values)."""
    half = stats.mean_ci(values.to_numpy(dtype=float)).half_width
    return 0.0 if math.isnan(half) else half
