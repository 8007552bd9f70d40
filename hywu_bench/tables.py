"""Tables from stored runs: forgetting and costs, step interference, gradient conflict, operator separation.

pandas and numpy only: `hywu-bench report` re-renders everything without importing torch.

Every table is mean +- std over seeds (sample std, ddof=1; one seed gives no std). Accuracy-like columns
are shown in percent. The best value of each column is bold among the continual-learning methods; the
reference methods (`REFERENCES`: joint and cumulative training, the oracle lora-per-task) are marked with
a dagger and never bold, because they are upper bounds rather than competitors.

A run folder that is unfinished (no COMPLETE marker) or unreadable is skipped with a warning that names it;
the rest are rendered.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from hywu_bench import metrics, results

log = logging.getLogger(__name__)

KEYS = ["scenario", "strategy", "seed"]
REFERENCES = ("joint", "cumulative", "lora-per-task")
# The order methods appear in tables and figures; unknown names follow, sorted.
CANONICAL_ORDER = ("naive", "joint", "cumulative", "replay", "ewc", "si", "lwf", "agem",
                   "lora", "olora", "lora-per-task", "hnet", "hywu")
COSTS = ["train_seconds", "samples_per_second", "trainable_parameters", "stored_memory_bytes"]
INTERFERENCE_FILE = "interference.json"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool | None  # None: no best value is marked (e.g. cosines, where neither end is "good")
    kind: str  # pct | seconds | rate | count | bytes


FORGETTING_COLUMNS = (
    Column("acc", "ACC", True, "pct"),
    Column("learning_acc", "Learning acc.", True, "pct"),
    Column("bwt", "BWT", True, "pct"),
    Column("forgetting", "Forgetting", False, "pct"),
    Column("fwt", "FWT", True, "pct"),
    Column("train_seconds", "Train time (s)", False, "seconds"),
    Column("samples_per_second", "Samples/s", True, "rate"),
    Column("trainable_parameters", "Trainable params", False, "count"),
    Column("stored_memory_bytes", "Stored memory", False, "bytes"),
)


@dataclass
class Loaded:
    """Everything `report` and `plots` read from a results folder."""

    frame: pd.DataFrame  # long format: one row per (run, after-row i, experience j), plus per-run costs
    probes: pd.DataFrame  # scenario, strategy, seed, kind, i, j, value (interference.json matrices)
    projections: pd.DataFrame  # scenario, strategy, seed, exp, pc1, pc2, ev1, ev2 (updates in 2-D, variance shares)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (run folder, why)


def order_strategies(names: Any) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [n for n in CANONICAL_ORDER if n in names]
    return known + sorted(n for n in names if n not in CANONICAL_ORDER)


# ---------------------------------------------------------------------------------------------------
# Loading


def _check_run(run: results.StoredRun) -> None:
    T = run.R.shape[0]
    if run.R.ndim != 2 or run.R.shape != (T, T) or T == 0 or run.before.shape != (T,):
        raise ValueError(f"accuracy matrix has shape {run.R.shape}, expected T x T with a 'before' row")
    if np.isnan(run.R[-1]).any():
        raise ValueError("the final row of the accuracy matrix has missing values")
    if "spec" not in run.config:
        raise ValueError("config.json has no 'spec'")


def _run_rows(run: results.StoredRun) -> list[dict[str, Any]]:
    spec = run.config["spec"]
    labels = [e.get("label", f"exp{j}") for j, e in enumerate(run.config.get("scenario", {}).get("experiences", []))]
    # The scenario is the results folder's name: a scenario read from a file is stored under its file's name.
    base = {"scenario": run.path.parent.parent.name, "strategy": run.config.get("run_name", spec.get("strategy")),
            "seed": int(spec.get("seed", 0))}
    costs = {k: _number(run.metrics.get(k)) for k in COSTS}
    T = run.R.shape[0]
    return [{**base, "after": i, "exp": j, "acc": run.R[i, j], "before": run.before[j],
             "exp_label": labels[j] if j < len(labels) else f"exp{j}", **costs}
            for i in range(T) for j in range(T)]


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def load(out: str | Path, scenarios: Sequence[str] | None = None) -> Loaded:
    """Load every complete, readable run below `out` (or only those of `scenarios`, by folder); skip the rest
    with a warning."""
    complete, incomplete = results.find_runs(out)
    if scenarios is not None:  # <out>/<scenario>/<run name>/seed<k>
        complete = [p for p in complete if p.parent.parent.name in scenarios]
        incomplete = [p for p in incomplete if p.parent.parent.name in scenarios]
    skipped = [(p, "unfinished (no COMPLETE marker)") for p in incomplete]
    rows, probes, projections = [], [], []
    for path in complete:
        try:
            run = results.load_run(path)
            _check_run(run)
            run_rows = _run_rows(run)
        except Exception as err:  # a broken folder must not hide the others
            skipped.append((path, f"unreadable ({type(err).__name__}: {err})"))
            continue
        rows.extend(run_rows)
        key = {k: run_rows[0][k] for k in KEYS}
        try:
            _probe_rows(path / INTERFERENCE_FILE, key, probes, projections)
        except Exception as err:
            log.warning("ignoring %s: %s: %s", path / INTERFERENCE_FILE, type(err).__name__, err)
    for path, why in skipped:
        log.warning("skipping run %s: %s", path, why)
    columns = KEYS + ["after", "exp", "acc", "before", "exp_label"] + COSTS
    return Loaded(pd.DataFrame(rows, columns=columns),
                  pd.DataFrame(probes, columns=KEYS + ["kind", "i", "j", "value"]),
                  pd.DataFrame(projections, columns=KEYS + ["exp", "pc1", "pc2", "ev1", "ev2"]), skipped)


def _probe_rows(path: Path, key: dict[str, Any], probes: list, projections: list) -> None:
    if not path.exists():
        return
    from hywu_bench.interference import MATRIX_KINDS, load as load_probe  # torch-free at import

    probe = load_probe(path)
    for kind in MATRIX_KINDS:
        matrix = probe.get(kind)
        if matrix is None:
            continue
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                probes.append({**key, "kind": kind, "i": i, "j": j, "value": _number(value)})
    projection = probe.get("update_projection")
    if projection:
        ev = (list(projection.get("explained_variance") or []) + [math.nan, math.nan])[:2]
        for exp, (pc1, pc2) in zip(projection["experience"], projection["points"]):
            projections.append({**key, "exp": int(exp), "pc1": float(pc1), "pc2": float(pc2),
                                "ev1": _number(ev[0]), "ev2": _number(ev[1])})


# ---------------------------------------------------------------------------------------------------
# Numbers


def _matrix(run: pd.DataFrame) -> np.ndarray:
    """One run's long rows back to its T x T accuracy matrix (NaN where a row was never written)."""
    T = int(run["exp"].max()) + 1
    return run.pivot_table(index="after", columns="exp", values="acc", dropna=False).reindex(
        index=range(T), columns=range(T)).to_numpy(dtype=float)


def run_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the accuracy-matrix metrics (recomputed from R) and the stored costs."""
    out = []
    for key, run in frame.groupby(KEYS, sort=False):
        R = _matrix(run)
        T = R.shape[0]
        before = run.groupby("exp")["before"].first().reindex(range(T)).to_numpy(dtype=float)
        row = dict(zip(KEYS, key))
        row.update(metrics.summary(R, before))
        for cost in COSTS:
            row[cost] = run[cost].iloc[0] if cost in run else math.nan
        out.append(row)
    return pd.DataFrame(out, columns=KEYS + ["acc", "learning_acc", "bwt", "forgetting", "fwt"] + COSTS)


def _aggregate(per_run: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    grouped = per_run.groupby(by, sort=False)[values]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    table = pd.concat({"mean": mean, "std": std}, axis=1)
    table.columns = [f"{metric}_{stat}" for stat, metric in table.columns]
    table["n_seeds"] = per_run.groupby(by, sort=False).size()
    ordered = [f"{v}_{s}" for v in values for s in ("mean", "std")] + ["n_seeds"]
    return table[ordered]


def _sort(table: pd.DataFrame) -> pd.DataFrame:
    order = order_strategies(table.index.get_level_values("strategy"))
    rank = {name: k for k, name in enumerate(order)}
    return table.sort_index(key=lambda idx: idx.map(rank) if idx.name == "strategy" else idx)


def forgetting_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, strategy): `<metric>_mean`, `<metric>_std` for every forgetting column, and n_seeds."""
    per_run = run_metrics(frame)
    return _sort(_aggregate(per_run, ["scenario", "strategy"], [c.key for c in FORGETTING_COLUMNS]))


def step_interference_table(frame: pd.DataFrame) -> pd.DataFrame:
    """I[i, j] = R[i-1, j] - R[i, j] (how much learning experience i hurt j), mean and std over seeds."""
    return matrix_table(step_interference_long(frame))


def step_interference_long(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, run in frame.groupby(KEYS, sort=False):
        R = _matrix(run)
        T = R.shape[0]
        I = metrics.step_interference(R)  # (T, T), NaN where undefined
        for i in range(1, T):
            for j in range(i):
                rows.append({**dict(zip(KEYS, key)), "i": i, "j": j, "value": I[i, j]})
    return pd.DataFrame(rows, columns=KEYS + ["i", "j", "value"])


def matrix_table(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of a long (scenario, strategy, seed, [kind,] i, j, value) matrix frame."""
    by = [c for c in ("scenario", "strategy", "kind", "i", "j") if c in long]
    table = _aggregate(long, by, ["value"]).rename(columns={"value_mean": "mean", "value_std": "std"})
    return _sort(table) if len(table) else table


def step_interference_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: mean of I[i, j] over all j < i, and the worst single step, mean +- std over seeds."""
    long = step_interference_long(frame)
    per_run = long.groupby(KEYS, sort=False)["value"].agg(mean_interference="mean", max_interference="max")
    return _sort(_aggregate(per_run.reset_index(), ["scenario", "strategy"], ["mean_interference", "max_interference"]))


def probe_summary(probes: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per strategy: mean and most negative cosine over pairs of different experiences, share of negative pairs."""
    sub = probes[(probes["kind"] == kind) & (probes["i"] < probes["j"])]
    per_run = sub.groupby(KEYS, sort=False)["value"].agg(
        mean_cosine="mean", min_cosine="min", negative_share=lambda v: float((v < 0).mean())).reset_index()
    return _sort(_aggregate(per_run, ["scenario", "strategy"], ["mean_cosine", "min_cosine", "negative_share"]))


INTERFERENCE_COLUMNS = (Column("mean_interference", "Mean step interference", False, "pct"),
                        Column("max_interference", "Worst step", False, "pct"))
PROBE_COLUMNS = (Column("mean_cosine", "Mean cosine", None, "cos"),
                 Column("min_cosine", "Most negative cosine", None, "cos"),
                 Column("negative_share", "Negative pairs", None, "pct"))


# ---------------------------------------------------------------------------------------------------
# Formatting


def _scaled(value: float, kind: str) -> tuple[float, str, str]:
    """(number in display units, format spec, unit) for one value of a column kind."""
    if kind == "pct":
        return 100 * value, ".1f", ""
    if kind == "cos":
        return value, ".2f", ""
    if kind == "seconds":
        return value, ".1f", ""
    if kind in ("rate", "count"):
        return value, ",.0f", ""
    if kind == "bytes":
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return value / size, ".1f", unit
        return value, ".0f", "B"
    return value, ".3g", ""


def _shown(mean: float, kind: str) -> float | None:
    """The mean as displayed (rounded), for finding ties in the best value."""
    if mean is None or pd.isna(mean):
        return None
    number, spec, unit = _scaled(float(mean), kind)
    return float(format(number, spec).replace(",", "")) * {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}.get(unit, 1)


@dataclass(frozen=True)
class Style:
    pm: str  # between mean and std
    bold: Callable[[str], str]
    wrap: Callable[[str], str]  # the whole cell
    number: Callable[[str], str]  # a formatted number (digit group commas)
    unit: Callable[[str], str]  # " KiB"
    dagger: str
    missing: str
    escape: Callable[[str], str]


def _cell(mean: float, std: float, kind: str, style: Style, best: bool) -> str:
    if mean is None or pd.isna(mean):
        return style.missing
    number, spec, unit = _scaled(float(mean), kind)
    text = style.number(format(number, spec))
    # Costs that do not vary over seeds (parameter counts, buffer sizes) show no "+- 0".
    if std is not None and not pd.isna(std) and (kind not in ("count", "bytes") or std > 0):
        spread = std / ({"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}.get(unit, 1) if kind == "bytes" else 1)
        spread = 100 * spread if kind == "pct" else spread
        text += style.pm + style.number(format(spread, spec))
    if unit:
        text += style.unit(unit)
    return style.wrap(style.bold(text) if best else text)


def _best(table: pd.DataFrame, column: Column) -> set[Any]:
    """Index labels whose displayed mean equals the best displayed mean, among non-reference methods."""
    shown = {ix: _shown(table.at[ix, f"{column.key}_mean"], column.kind) for ix in table.index
             if _strategy(ix) not in REFERENCES}
    shown = {ix: v for ix, v in shown.items() if v is not None}
    if column.higher_is_better is None or len(shown) < 2 or len(set(shown.values())) < 2:
        return set()  # one method, or all equal: nothing stands out
    target = max(shown.values()) if column.higher_is_better else min(shown.values())
    return {ix for ix, v in shown.items() if v == target}


def _strategy(ix: Any) -> str:
    return ix[-1] if isinstance(ix, tuple) else ix


def format_rows(table: pd.DataFrame, columns: tuple[Column, ...], style: Style) -> list[list[str]]:
    """Rows of display cells (method name first) with the best value per column made bold."""
    if "scenario" in (table.index.names or []):
        scenarios = table.index.get_level_values("scenario").unique()
        if len(scenarios) > 1:
            raise ValueError(f"one scenario per table; this one has {', '.join(map(str, scenarios))}")
        table = table.droplevel("scenario")
    best = {c.key: _best(table, c) for c in columns}
    rows = []
    for ix in table.index:
        name = _strategy(ix)
        cells = [style.escape(name) + (style.dagger if name in REFERENCES else "")]
        for c in columns:
            cells.append(_cell(table.at[ix, f"{c.key}_mean"], table.at[ix, f"{c.key}_std"], c.kind, style,
                               ix in best[c.key]))
        rows.append(cells)
    return rows


def _headers(columns: tuple[Column, ...]) -> list[str]:
    return ["Method"] + [c.header + (" (%)" if c.kind == "pct" else "") for c in columns]


MARKDOWN = Style(pm=" ± ", bold=lambda s: f"**{s}**", wrap=lambda s: s, number=lambda s: s,
                 unit=lambda u: f" {u}", dagger="†", missing="–", escape=lambda s: s)


def markdown(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS) -> str:
    rows = format_rows(table, columns, MARKDOWN)
    lines = ["| " + " | ".join(_headers(columns)) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}
    return "".join(special.get(ch, ch) for ch in text)


LATEX = Style(pm=r" \pm ", bold=lambda s: rf"\mathbf{{{s}}}", wrap=lambda s: f"${s}$",
              number=lambda s: s.replace(",", "{,}"), unit=lambda u: rf"\,\mathrm{{{u}}}", dagger=r"$^\dagger$",
              missing="--", escape=tex_escape)


def latex(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS, caption: str = "",
          label: str = "") -> str:
    """A booktabs table, cells in math mode (`$81.2 \\pm 1.3$`), the best per column in `\\mathbf`."""
    rows = format_rows(table, columns, LATEX)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
              " & ".join(tex_escape(h) for h in _headers(columns)) + r" \\", r"\midrule",
              *[" & ".join(r) + r" \\" for r in rows], r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def matrix_markdown(table: pd.DataFrame, kind: str, row_label: str = "after") -> str:
    """One small Markdown matrix per strategy from a `matrix_table` (mean over seeds)."""
    parts = []
    for strategy, sub in table.groupby(level="strategy", sort=False):
        sub = sub.reset_index()
        if sub["mean"].isna().all():  # offline references have no steps
            continue
        cells = sub.pivot_table(index="i", columns="j", values="mean", dropna=False)
        header = f"| {row_label} \\ exp | " + " | ".join(f"exp {j}" for j in cells.columns) + " |"
        n = int(sub["n_seeds"].max())
        lines = [f"**{strategy}** ({n} seed{'s' if n > 1 else ''})", "", header,
                 "|---|" + "---:|" * len(cells.columns)]
        for i, row in cells.iterrows():
            values = ["" if pd.isna(v) else format(_scaled(v, kind)[0], _scaled(v, kind)[1]) for v in row]
            lines.append(f"| {row_label} {i} | " + " | ".join(values) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------
# Writing

TABLES = {  # name: (title, columns of its summary table)
    "forgetting": ("Forgetting and costs", FORGETTING_COLUMNS),
    "step_interference": ("Step interference", INTERFERENCE_COLUMNS),
    "gradient_conflict": ("Gradient conflict on shared parameters", PROBE_COLUMNS),
    "gradient_conflict_updates": ("Gradient conflict on generated updates", PROBE_COLUMNS),
    "operator_separation": ("Operator separation", PROBE_COLUMNS),
}


def scenario_tables(loaded: Loaded, scenario: str) -> dict[str, tuple[pd.DataFrame, pd.DataFrame | None]]:
    """name -> (summary table, matrix table or None) for one scenario; probe tables only where stored."""
    frame = loaded.frame[loaded.frame["scenario"] == scenario]
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    if frame.empty:
        return out
    out["forgetting"] = (forgetting_table(frame), None)
    out["step_interference"] = (step_interference_summary(frame), step_interference_table(frame))
    probes = loaded.probes[loaded.probes["scenario"] == scenario]
    for kind in ("gradient_conflict", "gradient_conflict_updates", "operator_separation"):
        sub = probes[probes["kind"] == kind]
        if not sub.empty:
            out[kind] = (probe_summary(sub, kind), matrix_table(sub.drop(columns="kind")))
    return out


def write_tables(loaded: Loaded, scenario: str, dest: str | Path) -> dict[str, list[Path]]:
    """CSV (numbers), Markdown and LaTeX of every table of one scenario into `dest`; returns the paths."""
    dest = Path(dest)
    written: dict[str, list[Path]] = {}
    for name, (summary, matrix) in scenario_tables(loaded, scenario).items():
        title, columns = TABLES[name]
        paths = [dest / f"{name}.csv", dest / f"{name}.md", dest / f"{name}.tex"]
        csv = summary.reset_index().to_csv(index=False, float_format="%.6g")
        md = markdown(summary, columns)
        if matrix is not None:
            paths.append(dest / f"{name}_matrix.csv")
            results.atomic_write_text(paths[-1], matrix.reset_index().to_csv(index=False, float_format="%.6g"))
            kind = "pct" if name == "step_interference" else "cos"
            md += "\n" + matrix_markdown(matrix.droplevel("scenario"), kind, "after" if kind == "pct" else "exp")
        tex = latex(summary, columns, caption=f"{title} on {scenario}",
                    label=f"tab:{scenario}-{name}".replace("_", "-"))
        for path, text in zip(paths[:3], (csv, md, tex)):
            results.atomic_write_text(path, text)
        written[name] = paths
    return written
