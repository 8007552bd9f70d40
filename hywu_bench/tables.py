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
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hywu_bench import formatting, metrics, ranking, results

# How cells look lives in `formatting`; these names stay importable from here, where the tables are.
from hywu_bench.formatting import (  # noqa: F401
    LATEX,
    MARKDOWN,
    Column,
    Style,
    format_bytes,
    format_rows,
    matrix_markdown,
    note,
    shown_columns,
    tex_escape,
)
from hywu_bench.interference import MATRIX_KINDS as PROBE_KINDS  # torch-free at import
from hywu_bench.interference import TITLES as PROBE_TITLES

log = logging.getLogger(__name__)

KEYS = ["scenario", "strategy", "seed"]
METRICS = ["acc", "learning_acc", "bwt", "forgetting", "fwt", "aia", "plasticity_floor"]  # from R, per run
MEMORY_KINDS = ("raw_inputs", "derived", "model_state", "extra_parameters")  # metrics.json "memory", bytes
COSTS = ["train_seconds", "samples_per_second", "trainable_parameters", "stored_memory_bytes",
         *[f"memory_{kind}" for kind in MEMORY_KINDS], "memory_budget_bytes"]
META = ["base", "role", "budget_status", "options"]  # per run as stored; None where an older run lacks them
INTERFERENCE_FILE = "interference.json"
CURVE_COLUMNS = KEYS + ["iteration", "experience", "exp", "acc"]


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
    # scenario, strategy, seed, iteration, experience (being trained), exp, acc: the curve.csv of runs with
    # eval_every > 0, long format, only where evaluated
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CURVE_COLUMNS))


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
    rows, probes, projections, curves = [], [], [], []
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
        try:
            _curve_rows(path / results.CURVE, key, curves)
        except Exception as err:
            log.warning("ignoring %s: %s: %s", path / results.CURVE, type(err).__name__, err)
    for path, why in skipped:
        log.warning("skipping run %s: %s", path, why)
    columns = KEYS + ["after", "exp", "acc", "before", "exp_label"] + COSTS + META
    return Loaded(pd.DataFrame(rows, columns=columns),
                  pd.DataFrame(probes, columns=KEYS + ["kind", "i", "j", "value"]),
                  pd.DataFrame(projections, columns=KEYS + ["exp", "pc1", "pc2", "ev1", "ev2"]), skipped,
                  pd.DataFrame(curves, columns=CURVE_COLUMNS))


def _curve_rows(path: Path, key: dict[str, Any], curves: list) -> None:
    if not path.exists():
        return
    iterations, experience, acc = results.curve_from_csv(path)
    for n, (iteration, k) in enumerate(zip(iterations, experience)):
        for j, value in enumerate(acc[n]):
            if not math.isnan(value):
                curves.append({**key, "iteration": int(iteration), "experience": int(k), "exp": j, "acc": value})


def _probe_rows(path: Path, key: dict[str, Any], probes: list, projections: list) -> None:
    if not path.exists():
        return
    from hywu_bench.interference import MATRIX_KINDS  # torch-free at import
    from hywu_bench.interference import load as load_probe

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
    table = ranking.mark_ties(table, per_run, [columns[v] for v in values if v in columns], info, tested=METRICS)
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
        interference = metrics.step_interference(R)  # I: (T, T), NaN where undefined
        for i in range(1, T):
            for j in range(i):
                rows.append({**dict(zip(KEYS, key)), "i": i, "j": j, "value": interference[i, j]})
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
# Writing


def markdown(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS, equal_bytes: bool = True) -> str:
    return formatting.markdown(table, columns, equal_bytes)


def latex(table: pd.DataFrame, columns: tuple[Column, ...] = FORGETTING_COLUMNS, caption: str = "", label: str = "",
          equal_bytes: bool = True) -> str:
    return formatting.latex(table, columns, caption, label, equal_bytes)


TABLES = {  # name: (title, columns of its summary table)
    "forgetting": ("Forgetting", FORGETTING_COLUMNS),
    "costs": ("Costs and memory", COST_COLUMNS),
    "step_interference": ("Step interference", INTERFERENCE_COLUMNS),
    **{kind: (PROBE_TITLES[kind], PROBE_COLUMNS) for kind in PROBE_KINDS},  # interference.json's matrices
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
    for kind in PROBE_KINDS:
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
