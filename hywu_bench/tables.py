"""Tables from stored runs: forgetting and costs, step interference, gradient conflict, operator separation.

pandas and numpy only: `hywu-bench report` re-renders everything without importing torch.

Every table is mean +- std over seeds (sample std, ddof=1; one seed gives no std) with the 95% confidence
interval of the mean (Student t, `stats.mean_ci`). Accuracy-like columns are shown in percent. Bold: the
best method of each column and every method not significantly different from it (paired over seeds,
`stats.ties_with_best`; the CSV has `<metric>_p` and `<metric>_tied`). Roles and order come from the
strategy registry (`ranking`): references (joint, cumulative training; marked †) and oracles (task labels
at test time; ‡) are never bold, because they are bounds rather than competitors. A method that stores
something gets a row "replay at equal bytes" under it when a replay variant within 5% of its bytes ran.

A run folder that is unfinished (no COMPLETE marker) or unreadable is skipped with a warning that names it;
the rest are rendered.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from hywu_bench import metrics, ranking, results

log = logging.getLogger(__name__)

KEYS = ["scenario", "strategy", "seed"]
METRICS = ["acc", "learning_acc", "bwt", "forgetting", "fwt", "aia", "plasticity_floor"]  # from R, per run
MEMORY_KINDS = ("raw_inputs", "derived", "model_state", "extra_parameters")  # metrics.json "memory", bytes
COSTS = ["train_seconds", "samples_per_second", "trainable_parameters", "stored_memory_bytes",
         *[f"memory_{kind}" for kind in MEMORY_KINDS], "memory_budget_bytes"]
META = ["base", "role", "budget_status", "options"]  # per run as stored; None where an older run lacks them
INTERFERENCE_FILE = "interference.json"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool | None  # None: no best value is marked (e.g. cosines, where neither end is "good")
    kind: str  # pct | seconds | rate | count | bytes
    mark: str = ""  # a text column whose "over"/"under" is shown after the cell (the budget status)
    optional: bool = False  # left out of Markdown and LaTeX when no run has it (older runs)


STORED = Column("stored_memory_bytes", "Stored memory", False, "bytes", mark="budget_status")
FORGETTING_COLUMNS = (
    Column("acc", "ACC", True, "pct"),
    Column("learning_acc", "Learning acc.", True, "pct"),
    Column("bwt", "BWT", True, "pct"),
    Column("forgetting", "Forgetting", False, "pct"),
    Column("fwt", "FWT", True, "pct"),
    Column("aia", "AIA", True, "pct"),
    Column("plasticity_floor", "Plasticity floor", True, "pct"),
    STORED,
)
COST_COLUMNS = (
    Column("train_seconds", "Train time (s)", False, "seconds"),
    Column("samples_per_second", "Samples/s", True, "rate"),
    Column("trainable_parameters", "Trainable params", False, "count"),
    Column("memory_raw_inputs", "Raw inputs", None, "bytes", optional=True),
    Column("memory_derived", "Derived", None, "bytes", optional=True),
    Column("memory_model_state", "Model state", None, "bytes", optional=True),
    Column("memory_extra_parameters", "Extra params", None, "bytes", optional=True),
    STORED,
    Column("memory_budget_bytes", "Budget", None, "bytes", optional=True),
)


@dataclass
class Loaded:
    """Everything `report` and `plots` read from a results folder."""

    frame: pd.DataFrame  # long format: one row per (run, after-row i, experience j), plus per-run costs
    probes: pd.DataFrame  # scenario, strategy, seed, kind, i, j, value (interference.json matrices)
    projections: pd.DataFrame  # scenario, strategy, seed, exp, pc1, pc2, ev1, ev2 (updates in 2-D, variance shares)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (run folder, why)


def order_strategies(names: Any, info: dict[str, ranking.Method] | None = None) -> list[str]:
    """Registry order of the base strategies (`Entry.order`), a base before its variants; unknown names last."""
    return ranking.order(names, info)


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
    costs = {k: _number(run.metrics.get(k)) for k in COSTS[:4]}
    memory = run.metrics.get("memory") if isinstance(run.metrics.get("memory"), dict) else {}
    costs.update({f"memory_{k}": _number(memory.get(k)) for k in MEMORY_KINDS})
    costs["memory_budget_bytes"] = _number(run.metrics.get("memory_budget_bytes"))
    T = run.R.shape[0]
    return [{**base, "after": i, "exp": j, "acc": run.R[i, j], "before": run.before[j],
             "exp_label": labels[j] if j < len(labels) else f"exp{j}", **costs, **_meta(run)}
            for i in range(T) for j in range(T)]


def _meta(run: results.StoredRun) -> dict[str, Any]:
    strategy = run.config.get("strategy") if isinstance(run.config.get("strategy"), dict) else {}
    options = strategy.get("options")
    status = run.metrics.get("memory_budget_status")
    return {"base": strategy.get("name"), "role": strategy.get("role"),
            "budget_status": status if isinstance(status, str) else None,
            "options": json.dumps(options, sort_keys=True, default=str) if isinstance(options, dict) else None}


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
    columns = KEYS + ["after", "exp", "acc", "before", "exp_label"] + COSTS + META
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
    """One row per run: the accuracy-matrix metrics (recomputed from R), the stored costs and what the run
    says about itself (base strategy, role, budget status, options)."""
    out = []
    for key, run in frame.groupby(KEYS, sort=False):
        R = _matrix(run)
        T = R.shape[0]
        before = run.groupby("exp")["before"].first().reindex(range(T)).to_numpy(dtype=float)
        row = dict(zip(KEYS, key))
        row.update(metrics.summary(R, before))
        for cost in COSTS:
            row[cost] = run[cost].iloc[0] if cost in run else math.nan
        for meta in META:
            row[meta] = run[meta].iloc[0] if meta in run else None
        out.append(row)
    return pd.DataFrame(out, columns=KEYS + METRICS + COSTS + META)


def _aggregate(per_run: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    return ranking.aggregate(per_run, by, values)


def _with_roles(table: pd.DataFrame, info: dict[str, ranking.Method]) -> pd.DataFrame:
    """`base` and `role` columns, so a table alone says who is ranked (a plugin's oracle read without it)."""
    names = table.index.get_level_values("strategy")
    return table.assign(base=[info[n].base for n in names], role=[info[n].role for n in names])


def _sort(table: pd.DataFrame, info: dict[str, ranking.Method] | None = None) -> pd.DataFrame:
    order = order_strategies(table.index.get_level_values("strategy"), info)
    rank = {name: k for k, name in enumerate(order)}
    return table.sort_index(key=lambda idx: idx.map(rank) if idx.name == "strategy" else idx)


def forgetting_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, strategy): for every metric and cost `<key>_mean`, `_std`, `_ci_lo`, `_ci_hi` and, where
    a column has a best value, `_p` and `_tied`; n_seeds, test, base, role, budget_status and
    equal_bytes_replay (the replay variant at equal bytes, or "")."""
    per_run = run_metrics(frame)
    info = ranking.frame_methods(per_run)
    values = METRICS + COSTS
    table = ranking.aggregate(per_run, ["scenario", "strategy"], values)
    columns = {c.key: c for c in FORGETTING_COLUMNS + COST_COLUMNS}
    table = ranking.mark_ties(table, per_run, [columns[v] for v in values if v in columns], info)
    table = _with_roles(table, info)
    status = per_run.groupby(["scenario", "strategy"], sort=False)["budget_status"].agg(ranking.budget_status)
    table["budget_status"] = status.reindex(table.index).fillna("")
    near = ranking.equal_bytes(table, info)
    table["equal_bytes_replay"] = [near[ix][-1] if ix in near else "" for ix in table.index]
    stat_columns = [f"{v}_{s}" for v in values for s in ("mean", "std", "ci_lo", "ci_hi", "p", "tied")
                    if f"{v}_{s}" in table]
    return _sort(table[stat_columns + ["n_seeds", "test", "base", "role", "budget_status", "equal_bytes_replay"]],
                 info)


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
    table = _aggregate(long, by, ["value"]).rename(columns=lambda c: c.removeprefix("value_"))
    return _sort(table) if len(table) else table


def step_interference_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: mean of I[i, j] over all j < i, and the worst single step, mean +- std over seeds."""
    long = step_interference_long(frame)
    per_run = long.groupby(KEYS, sort=False)["value"].agg(mean_interference="mean", max_interference="max")
    per_run = per_run.reset_index()
    info = ranking.frame_methods(frame)
    table = _aggregate(per_run, ["scenario", "strategy"], ["mean_interference", "max_interference"])
    return _sort(_with_roles(ranking.mark_ties(table, per_run, INTERFERENCE_COLUMNS, info), info), info)


def probe_summary(probes: pd.DataFrame, kind: str, info: dict[str, ranking.Method] | None = None) -> pd.DataFrame:
    """Per strategy: mean and most negative cosine over pairs of different experiences, share of negative pairs."""
    sub = probes[(probes["kind"] == kind) & (probes["i"] < probes["j"])]
    per_run = sub.groupby(KEYS, sort=False)["value"].agg(
        mean_cosine="mean", min_cosine="min", negative_share=lambda v: float((v < 0).mean())).reset_index()
    info = {**ranking.methods(per_run["strategy"]), **(info or {})}
    table = _aggregate(per_run, ["scenario", "strategy"], ["mean_cosine", "min_cosine", "negative_share"])
    return _sort(_with_roles(table, info), info)


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


def format_bytes(value: float) -> str:
    number, spec, unit = _scaled(float(value), "bytes")
    return f"{format(number, spec)} {unit}"


def _shown(mean: float, kind: str) -> float | None:
    """The mean as displayed (rounded), for finding ties in the best value."""
    if mean is None or pd.isna(mean):
        return None
    number, spec, unit = _scaled(float(mean), kind)
    return float(format(number, spec).replace(",", "")) * UNITS.get(unit, 1)


UNITS = {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}


@dataclass(frozen=True)
class Style:
    pm: str  # between mean and std
    bold: Callable[[str], str]
    wrap: Callable[[str], str]  # the whole mean +- std
    number: Callable[[str], str]  # a formatted number (digit group commas)
    unit: Callable[[str], str]  # " KiB"
    ci: Callable[[str, str], str]  # the 95% interval after the cell: " [lo, hi]"
    marks: dict[str, str]  # role -> mark after a name (references, oracles)
    equal_bytes: Callable[[str], str]  # the name cell of a "replay at equal bytes" row
    missing: str
    escape: Callable[[str], str]


def _cell(table: pd.DataFrame, ix: Any, column: Column, style: Style, best: bool) -> str:
    """mean +- std [ci_lo, ci_hi] in display units, bold when `best`; over/under budget marked."""
    value = lambda stat: table.at[ix, f"{column.key}_{stat}"] if f"{column.key}_{stat}" in table else math.nan
    mean, std = value("mean"), value("std")
    if mean is None or pd.isna(mean):
        return style.missing
    number, spec, unit = _scaled(float(mean), column.kind)
    scale = lambda v: format((100 * v if column.kind == "pct" else v / UNITS.get(unit, 1)), spec)
    text = style.number(format(number, spec))
    # Costs that do not vary over seeds (parameter counts, buffer sizes) show no "+- 0" and no interval.
    varies = not pd.isna(std) and (column.kind not in ("count", "bytes") or std > 0)
    if varies:
        text += style.pm + style.number(scale(std))
    if unit:
        text += style.unit(unit)
    text = style.wrap(style.bold(text) if best else text)
    if varies and not pd.isna(value("ci_lo")):
        text += style.ci(style.number(scale(value("ci_lo"))), style.number(scale(value("ci_hi"))))
    status = table.at[ix, column.mark] if column.mark and column.mark in table else ""
    if isinstance(status, str) and status.startswith(("over", "under")):
        text += f" ({status})"
    return text


def _flag(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _best(table: pd.DataFrame, column: Column, info: dict[str, ranking.Method]) -> set[Any]:
    """Rows to make bold: the best ranked method of the column and those tied with it (`<key>_tied`, or the
    same displayed mean). Nothing when fewer than two methods have a value or all show the same."""
    if column.higher_is_better is None or f"{column.key}_mean" not in table:
        return set()
    shown = {ix: _shown(table.at[ix, f"{column.key}_mean"], column.kind) for ix in table.index
             if info[_strategy(ix)].ranked}
    shown = {ix: v for ix, v in shown.items() if v is not None}
    if len(shown) < 2 or len(set(shown.values())) < 2:
        return set()
    target = max(shown.values()) if column.higher_is_better else min(shown.values())
    tied = f"{column.key}_tied"
    return {ix for ix, v in shown.items() if v == target or (tied in table and _flag(table.at[ix, tied]))}


def _strategy(ix: Any) -> str:
    return ix[-1] if isinstance(ix, tuple) else ix


def _one_scenario(table: pd.DataFrame) -> pd.DataFrame:
    if "scenario" in (table.index.names or []):
        scenarios = table.index.get_level_values("scenario").unique()
        if len(scenarios) > 1:
            raise ValueError(f"one scenario per table; this one has {', '.join(map(str, scenarios))}")
        table = table.droplevel("scenario")
    return table


def shown_columns(table: pd.DataFrame, columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """The columns to display: optional ones only where some run has a value."""
    return tuple(c for c in columns if not c.optional or
                 (f"{c.key}_mean" in table and table[f"{c.key}_mean"].notna().any()))


def format_rows(table: pd.DataFrame, columns: tuple[Column, ...], style: Style,
                equal_bytes: bool = False) -> list[list[str]]:
    """Rows of display cells (method name first), best and tied per column bold; with `equal_bytes`, the
    replay variant at a method's bytes (`equal_bytes_replay`) as an unranked row under it."""
    table = _one_scenario(table)
    info = ranking.methods(table.index, *(dict(zip(table.index, table[k])) if k in table else None
                                          for k in ("base", "role")))
    best = {c.key: _best(table, c, info) for c in columns}
    rows = []
    for ix in table.index:
        name = _strategy(ix)
        rows.append([style.escape(name) + style.marks.get(info[name].role, "")] +
                    [_cell(table, ix, c, style, ix in best[c.key]) for c in columns])
        near = table.at[ix, "equal_bytes_replay"] if equal_bytes and "equal_bytes_replay" in table else ""
        if isinstance(near, str) and near in table.index:
            rows.append([style.equal_bytes(style.escape(near))] + [_cell(table, near, c, style, False) for c in columns])
    return rows


def _headers(columns: tuple[Column, ...]) -> list[str]:
    return ["Method"] + [c.header + (" (%)" if c.kind == "pct" else "") for c in columns]


MARKDOWN = Style(pm=" ± ", bold=lambda s: f"**{s}**", wrap=lambda s: s, number=lambda s: s,
                 unit=lambda u: f" {u}", ci=lambda lo, hi: f" [{lo}, {hi}]", marks=dict(ranking.MARKS),
                 equal_bytes=lambda name: f"↳ replay at equal bytes: {name}", missing="–", escape=lambda s: s)


def note(table: pd.DataFrame) -> str:
    """One sentence under a ranked table: what the brackets are, what bold means, and which test decided."""
    tests = ranking.tests_used(table)
    n = table["n_seeds"].astype(int) if "n_seeds" in table else pd.Series(dtype=int)
    seeds = (f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}") if len(n) else "0"
    how = (f"{' or '.join(tests)} on the seeds both ran, two-sided, 5% level" if tests
           else "no test: fewer than 2 paired seeds")
    return (f"Cells: mean ± std [95% confidence interval of the mean, Student t] over {seeds} seeds. Bold: the "
            f"best method of a column and every method not significantly different from it ({how}). "
            f"† reference, ‡ oracle: never ranked.")


def markdown(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS, equal_bytes: bool = True) -> str:
    columns = shown_columns(table, columns)
    rows = format_rows(table, columns, MARKDOWN, equal_bytes)
    lines = ["| " + " | ".join(_headers(columns)) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}
    return "".join(special.get(ch, ch) for ch in text)


LATEX = Style(pm=r" \pm ", bold=lambda s: rf"\mathbf{{{s}}}", wrap=lambda s: f"${s}$",
              number=lambda s: s.replace(",", "{,}"), unit=lambda u: rf"\,\mathrm{{{u}}}",
              ci=lambda lo, hi: rf" {{\scriptsize $[{lo}, {hi}]$}}", marks={"reference": r"$^\dagger$",
                                                                          "oracle": r"$^\ddagger$"},
              equal_bytes=lambda name: rf"$\hookrightarrow$ replay at equal bytes: {name}", missing="--",
              escape=tex_escape)


def latex(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS, caption: str = "",
          label: str = "", equal_bytes: bool = True) -> str:
    """A booktabs table, cells in math mode (`$81.2 \\pm 1.3$ [CI]`), best and tied in `\\mathbf`."""
    columns = shown_columns(table, columns)
    rows = format_rows(table, columns, LATEX, equal_bytes)
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
    "forgetting": ("Forgetting", FORGETTING_COLUMNS),
    "costs": ("Costs and memory", COST_COLUMNS),
    "step_interference": ("Step interference", INTERFERENCE_COLUMNS),
    "gradient_conflict": ("Gradient conflict on shared parameters", PROBE_COLUMNS),
    "gradient_conflict_updates": ("Gradient conflict on generated updates", PROBE_COLUMNS),
    "operator_separation": ("Operator separation", PROBE_COLUMNS),
}
MATRICES = "<!-- matrices -->"  # in a table's Markdown: the per-cell matrices follow (the pages cut there)


def scenario_tables(loaded: Loaded, scenario: str) -> dict[str, tuple[pd.DataFrame, pd.DataFrame | None]]:
    """name -> (summary table, matrix table or None) for one scenario; probe tables only where stored.
    "costs" is the forgetting table again, shown with the cost columns."""
    frame = loaded.frame[loaded.frame["scenario"] == scenario]
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    if frame.empty:
        return out
    out["forgetting"] = out["costs"] = (forgetting_table(frame), None)
    out["step_interference"] = (step_interference_summary(frame), step_interference_table(frame))
    probes = loaded.probes[loaded.probes["scenario"] == scenario]
    info = ranking.frame_methods(frame)
    for kind in ("gradient_conflict", "gradient_conflict_updates", "operator_separation"):
        sub = probes[probes["kind"] == kind]
        if not sub.empty:
            out[kind] = (probe_summary(sub, kind, info), matrix_table(sub.drop(columns="kind")))
    return out


def _csv(name: str, summary: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    """forgetting.csv holds every number; costs.csv only its own columns."""
    if name == "costs":
        keys = tuple(f"{c.key}_" for c in columns)
        summary = summary[[c for c in summary.columns if c.startswith(keys)] + ["n_seeds", "budget_status"]]
    return summary.reset_index().to_csv(index=False, float_format="%.6g")


def write_tables(loaded: Loaded, scenario: str, dest: str | Path) -> dict[str, list[Path]]:
    """CSV (numbers), Markdown and LaTeX of every table of one scenario into `dest`; returns the paths."""
    dest = Path(dest)
    written: dict[str, list[Path]] = {}
    for name, (summary, matrix) in scenario_tables(loaded, scenario).items():
        title, columns = TABLES[name]
        paths = [dest / f"{name}.csv", dest / f"{name}.md", dest / f"{name}.tex"]
        md = markdown(summary, columns, equal_bytes=name == "forgetting")
        if any(c.higher_is_better is not None for c in columns):
            md += "\n" + note(summary) + "\n"
        if matrix is not None:
            paths.append(dest / f"{name}_matrix.csv")
            results.atomic_write_text(paths[-1], matrix.reset_index().to_csv(index=False, float_format="%.6g"))
            kind = "pct" if name == "step_interference" else "cos"
            md += f"\n{MATRICES}\n\n" + matrix_markdown(matrix.droplevel("scenario"), kind,
                                                        "after" if kind == "pct" else "exp")
        tex = latex(summary, columns, caption=f"{title} on {scenario}",
                    label=f"tab:{scenario}-{name}".replace("_", "-"), equal_bytes=name == "forgetting")
        for path, text in zip(paths[:3], (_csv(name, summary, columns), md, tex)):
            results.atomic_write_text(path, text)
        written[name] = paths
    return written
