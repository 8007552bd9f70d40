"""Figures from stored runs: every function takes the long-format frame(s) of `tables.load` and returns a Figure.

matplotlib's object API only (no pyplot, no global figure manager, nothing shown): a Figure is rendered
with the Agg canvas when saved. No torch import.

Style: one palette for methods throughout (Okabe & Ito 2008, safe for the common colour-vision
deficiencies), each method also with its own marker so print in grey stays readable; viridis for
accuracies and a diverging blue-red map centred on zero for signed quantities (cosines, interference).
Points and bars: means over seeds with their 95% confidence interval (Student t, `stats.mean_ci`) as error
bars; bands over the stream: +-1 std. References (joint, cumulative) and oracles are found from their role
in the strategy registry (`ranking`), never by name.

The figures live in modules by kind: `accuracy` (accuracy matrices, over the stream, against forgetting,
forgetting, step interference), `memory` (accuracy against stored memory), `probes` (cosine heatmaps, the
generated updates' projection), `stability` (the stability gap); `_style` holds the palette, `save` and the
helpers they share. Every name, private ones included, is reachable from `hywu_bench.figures` as before.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from hywu_bench import tables
from hywu_bench.figures._style import (
    HIGHLIGHT,
    MARKERS,
    METHOD_COLOURS,
    OKABE_ITO,
    RC,
    REFERENCE_COLOURS,
    WIDTH,
    method_styles,
    save,
    styled,
)
from hywu_bench.figures._style import _ci as _ci
from hywu_bench.figures._style import _exp_labels as _exp_labels
from hywu_bench.figures._style import _grid as _grid
from hywu_bench.figures._style import _heatmaps as _heatmaps
from hywu_bench.figures._style import _mean_matrix as _mean_matrix
from hywu_bench.figures._style import _one_scenario as _one_scenario
from hywu_bench.figures._style import _per_run as _per_run
from hywu_bench.figures._style import _within as _within
from hywu_bench.figures.accuracy import (
    accuracy_matrices,
    accuracy_over_stream,
    accuracy_vs_forgetting,
    forgetting_bars,
    step_interference,
)
from hywu_bench.figures.memory import LABEL_BOX, accuracy_vs_memory, memory_frontiers
from hywu_bench.figures.memory import _byte_ticks as _byte_ticks
from hywu_bench.figures.memory import _bytes_label as _bytes_label
from hywu_bench.figures.memory import _memory_layout as _memory_layout
from hywu_bench.figures.memory import _memory_panel as _memory_panel
from hywu_bench.figures.memory import _memory_styles as _memory_styles
from hywu_bench.figures.memory import _variant_labels as _variant_labels
from hywu_bench.figures.probes import STATIC_VARIANCE, cosine_heatmaps, static_updates, update_projection
from hywu_bench.figures.stability import stability_gap

__all__ = ["HIGHLIGHT", "LABEL_BOX", "MARKERS", "METHOD_COLOURS", "OKABE_ITO", "RC", "REFERENCE_COLOURS",
           "STATIC_VARIANCE", "WIDTH", "accuracy_matrices", "accuracy_over_stream", "accuracy_vs_forgetting",
           "accuracy_vs_memory", "cosine_heatmaps", "forgetting_bars", "memory_frontiers", "method_styles", "save",
           "scenario_figures", "stability_gap", "static_updates", "step_interference", "styled", "update_projection",
           "write_figures"]


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
