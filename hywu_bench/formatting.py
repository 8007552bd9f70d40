"""How a table's numbers are shown: units, mean ± std [95% CI], bold for the best and the tied, role marks,
the "replay at equal bytes" rows; as Markdown and as LaTeX (booktabs, cells in math mode).

Reads the summary tables of `tables` (columns `<key>_mean`, `_std`, `_ci_lo`, `_ci_hi`, `_tied`, and `base`,
`role`, `equal_bytes_replay` where present); pandas only, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from hywu_bench import ranking


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool | None  # None: no best value is marked (e.g. cosines, where neither end is "good")
    kind: str  # pct | seconds | rate | count | bytes
    mark: str = ""  # a text column whose "over"/"under" is shown after the cell (the budget status)
    optional: bool = False  # left out of Markdown and LaTeX when no run has it (older runs)


UNITS = {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}


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
        for unit, size in UNITS.items():
            if abs(value) >= size:
                return value / size, ".1f", unit
        return value, ".0f", "B"
    return value, ".3g", ""


def format_bytes(value: float) -> str:
    """1.5 MiB, 2.0 KiB, 512 B."""
    number, spec, unit = _scaled(float(value), "bytes")
    return f"{format(number, spec)} {unit}"


def _shown(mean: float, kind: str) -> float | None:
    """The mean as displayed (rounded), for finding ties in the best value."""
    if mean is None or pd.isna(mean):
        return None
    number, spec, unit = _scaled(float(mean), kind)
    return float(format(number, spec).replace(",", "")) * UNITS.get(unit, 1)


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

    def value(stat: str) -> Any:
        return table.at[ix, f"{column.key}_{stat}"] if f"{column.key}_{stat}" in table else math.nan

    mean, std = value("mean"), value("std")
    if mean is None or pd.isna(mean):
        return style.missing
    number, spec, unit = _scaled(float(mean), column.kind)

    def scale(v: float) -> str:
        return format((100 * v if column.kind == "pct" else v / UNITS.get(unit, 1)), spec)

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
            rows.append([style.equal_bytes(style.escape(near))] +
                        [_cell(table, near, c, style, False) for c in columns])
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


def markdown(table: pd.DataFrame, columns: tuple[Column, ...], equal_bytes: bool = True) -> str:
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


def latex(table: pd.DataFrame, columns: tuple[Column, ...], caption: str = "",
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
