"""The report's pages: every table and figure of a scenario, with a paragraph each, as Markdown.

`render` writes every table and figure of each scenario into <out>/<scenario>/_report/ (with a README.md
embedding them) and <out>/REPORT.md embedding all scenarios. Rendering imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hywu_bench import ranking, results, stats, tables
from hywu_bench.interference import DESCRIPTIONS as PROBE_DESCRIPTIONS

REPORT_DIR = "_report"
BOUNDS = ("† marks references (joint/cumulative training: bounds) and ‡ oracles (task labels at test time); "
          "neither is ranked.")
DESCRIPTIONS = {
    "forgetting": "Final average accuracy (ACC), accuracy right after learning each experience (learning acc.), "
                  "backward transfer (BWT, Lopez-Paz & Ranzato 2017), average max-forgetting (Chaudhry et al. "
                  "2018), forward transfer (FWT) against the untrained model, average incremental accuracy "
                  "(AIA, the mean over steps of the accuracy on everything seen so far; Rebuffi et al. 2017), "
                  "the plasticity floor (the worst accuracy on an experience right after learning it), and the "
                  "bytes kept between experiences (marked when over or under a memory budget). A row \"replay "
                  "at equal bytes\" under a method repeats the replay variant that stores within 5% of its "
                  "bytes, when one ran.",
    "costs": "Training time, training samples per second, trainable parameters, and the memory a method keeps "
             "by kind where the runs recorded it: raw inputs (replay buffers), derived data (importances, "
             "logits), model state (old models, anchors), extra parameters (adapters, generators; not counted "
             "as stored memory), their stored total, and the budget a run was sized to.",
    "step_interference": "How much learning experience i cost each earlier experience j, in accuracy points "
                         "(I[i, j] = R[i-1, j] - R[i, j]): the mean over all such pairs and the worst single step.",
    **PROBE_DESCRIPTIONS,  # the interference probes describe themselves (hywu_bench/interference.py)
    "accuracy_matrices": "Accuracy on every test experience (columns) after training each experience (rows), "
                         "mean over seeds. Forgetting shows as a fading lower triangle.",
    "accuracy_over_stream": "Accuracy on each experience as the stream goes on (bands: ±1 std over seeds); the "
                            "first panel is the average over the experiences seen so far, the dotted line marks "
                            "when each experience was learnt.",
    "accuracy_vs_forgetting": "Final average accuracy against average max-forgetting (error bars: 95% CI over "
                              "seeds); up and to the left is better. Offline references are horizontal lines.",
    "forgetting_bars": "Average max-forgetting per method with its 95% CI over seeds; dots are single seeds.",
    "step_interference_figure": "The step-interference matrices as heatmaps: red cells are experiences hurt "
                                "by a later one.",
    "accuracy_vs_memory": "Final average accuracy (95% CI over seeds) against the bytes a method stores between "
                          "experiences (log scale; methods storing nothing sit at 0). A method run at several "
                          "memory sizes (replay at several buffer sizes) is a line, the frontier: a point above "
                          "it beats that method at its own memory. References are dashed lines with their CI.",
    "stability_gap": "Continual evaluation (runs with eval_every > 0): accuracy on each earlier experience every "
                     "N training iterations, from the end of its own training on; dotted lines are experience "
                     "boundaries. A dip just after a boundary that later recovers is the stability gap (De Lange "
                     "et al., ICLR 2023); min-ACC and WC-ACC in each run's metrics.json measure it.",
    "update_projection": "The generated updates of held-out instances on their first two principal "
                         "components, coloured by experience (one seed).",
}
FRONT = ("Final average accuracy (ACC, %) after the last experience: mean over seeds [95% confidence "
         "interval, Student t]. Bold: the best method of a scenario and every method not significantly "
         "different from it ({tests}, two-sided, 5% level). " + BOUNDS)


@dataclass
class Rendered:
    out: Path
    scenarios: dict[str, dict[str, list[Path]]]  # scenario -> table/figure name -> files
    skipped: list[tuple[Path, str]]
    index: Path | None = None  # REPORT.md


def render(out: str | Path, scenarios: list[str] | None = None, write_index: bool = True,
           title: str = "hywu-bench report", intro: str = "") -> Rendered:
    """Tables and figures of every (or the given) scenario into <out>/<scenario>/_report/, each with a
    README.md; with `write_index`, also <out>/REPORT.md: the front page (final accuracy per method and
    scenario, the memory frontiers; its files in <out>/_report/), then every scenario without its matrices."""
    from hywu_bench import figures  # matplotlib only when something is drawn

    out = Path(out)
    loaded = tables.load(out, scenarios)
    present = list(dict.fromkeys(loaded.frame["scenario"]))
    rendered = Rendered(out, {}, loaded.skipped)
    sections = []
    order = [s for s in (scenarios or present) if s in present]  # the caller's order
    for scenario in order:
        dest = out / scenario / REPORT_DIR
        written = tables.write_tables(loaded, scenario, dest)
        drawn = figures.write_figures(loaded, scenario, dest)
        rendered.scenarios[scenario] = {**written,
                                        **{f"{k}_figure" if k in written else k: v for k, v in drawn.items()}}
        files = rendered.scenarios[scenario]
        results.atomic_write_text(dest / "README.md",
                                  f"# {scenario}\n\n" + scenario_markdown(loaded, scenario, files, dest))
        sections.append((scenario, scenario_markdown(loaded, scenario, files, dest, full=False)))
    if write_index and order:
        rendered.index = out / "REPORT.md"
        front = front_page(loaded, order, out / REPORT_DIR)
        shown = list(dict.fromkeys(name for files in rendered.scenarios.values() for name in files))
        results.atomic_write_text(rendered.index, index_markdown(loaded, sections, title, intro, front, shown))
    return rendered


def front_page(loaded: tables.Loaded, scenarios: list[str], dest: Path) -> str:
    """The report's first screen: final accuracy per method (rows) and scenario (columns) with CIs and ties,
    at the common memory budget where runs had one (headline.csv/.md), then the frontier figure."""
    from hywu_bench import figures

    frame = loaded.frame[loaded.frame["scenario"].isin(scenarios)]
    per_run = tables.run_metrics(frame)
    info = ranking.frame_methods(per_run)
    long, budgets = ranking.headline(per_run, scenarios, info)
    results.atomic_write_text(dest / "headline.csv", long.to_csv(index=False, float_format="%.6g"))
    table = headline_markdown(long, budgets, scenarios, info)
    results.atomic_write_text(dest / "headline.md", table)
    figures.save(figures.memory_frontiers(frame), dest / "memory_frontiers")
    rel = f"{REPORT_DIR}/memory_frontiers"
    return (f"{table}\n![Final accuracy against stored memory]({rel}.png)\n\n"
            f"{DESCRIPTIONS['accuracy_vs_memory']} ([PDF]({rel}.pdf), [table as CSV]({REPORT_DIR}/headline.csv))\n")


def _headline_cell(row: pd.Series) -> str:
    if pd.isna(row["mean"]):
        return "–"
    text = f"{100 * row['mean']:.1f}"
    text = f"**{text}**" if row["tied"] and row["role"] == "method" else text
    if not pd.isna(row["ci_lo"]):
        text += f" [{100 * row['ci_lo']:.1f}, {100 * row['ci_hi']:.1f}]"
    status = row["budget_status"]
    return text + (f" ({status})" if isinstance(status, str) and status.startswith(("over", "under")) else "")


def headline_markdown(long: pd.DataFrame, budgets: dict[str, float | None], scenarios: list[str],
                      info: dict[str, ranking.Method]) -> str:
    """The front page's table from `ranking.headline`, with the sentence saying how to read it."""
    labels = ranking.order(long["row"], {**ranking.methods(long["row"]), **info})
    roles = long.groupby("row")["role"].first()
    header = [f"{s} (budget {tables.format_bytes(budgets[s])})" if budgets.get(s) else s for s in scenarios]
    lines = ["| Method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(scenarios)]
    for label in labels:
        cells = []
        for scenario in scenarios:
            hit = long[(long["row"] == label) & (long["scenario"] == scenario)]
            cell = _headline_cell(hit.iloc[0]) if len(hit) else "–"
            if len(hit) and hit.iloc[0]["strategy"] != label:  # a variant stands for its base at the budget
                cell += f" ({hit.iloc[0]['strategy']})"
            cells.append(cell)
        lines.append(f"| {label}{ranking.MARKS[roles[label]]} | " + " | ".join(cells) + " |")
    tests = sorted({ranking.TEST_NAMES[t] for t in long["test"] if t in ranking.TEST_NAMES})
    n = long.loc[long["role"] == "method", "n_seeds"]
    seeds = "" if n.empty else (f" over {n.min()} seeds" if n.min() == n.max() else f" over {n.min()}-{n.max()} seeds")
    note = FRONT.format(tests=(" or ".join(tests) + seeds + " paired by seed") if tests else
                        "no test: fewer than 2 paired seeds")
    if any(budgets.values()):
        note += (" Where a scenario's runs had a memory budget, each method's row is its run at that budget "
                 "(named in brackets when a variant), marked when over or under it.")
    else:
        note += " No memory budgets were set: each method stores what its options make it store (figure below)."
    return "\n".join(lines) + "\n\n" + note + "\n"


def _forgetting_facts(frame: pd.DataFrame) -> str:
    table = tables.forgetting_table(frame).droplevel("scenario")
    ranked = table[table["role"] == "method"]
    if ranked.empty or ranked["acc_mean"].isna().all():
        return ""
    best = ranked["acc_mean"].idxmax()
    least = ranked["forgetting_mean"].idxmin() if ranked["forgetting_mean"].notna().any() else None
    tied = [n for n, flag in ranked["acc_tied"].astype(bool).items() if flag and n != best]
    text = f"Highest final accuracy: **{best}** ({100 * ranked.at[best, 'acc_mean']:.1f} %)"
    text += (f"; not significantly different from it: {', '.join(tied)}." if tied else
             "; every other method is significantly below it." if ranked["acc_p"].notna().any() else ".")
    if least is not None:
        text += f" Lowest forgetting: **{least}** ({100 * ranked.at[least, 'forgetting_mean']:.1f} points)."
    per_run = tables.run_metrics(frame)
    for name, near in ranked["equal_bytes_replay"].items():
        if near:
            mine, theirs = (per_run[per_run["strategy"] == n].set_index("seed")["acc"] for n in (name, near))
            common = mine.index.intersection(theirs.index)
            p = stats.paired_pvalue(mine[common], theirs[common]).p
            text += (f" At equal bytes, {name} {100 * mine.mean():.1f} % against {near} {100 * theirs.mean():.1f} %"
                     + (f" (paired p = {p:.2g})." if not pd.isna(p) else "."))
    return text


def _facts(loaded: tables.Loaded, scenario: str, name: str) -> str:
    """One data-driven sentence for a table or figure: who is best and who is tied with it, how large the
    conflict is, which methods are over budget, which have no projection panel."""
    frame = loaded.frame[loaded.frame["scenario"] == scenario]
    if name == "forgetting":
        return _forgetting_facts(frame)
    if name == "costs":
        over = sorted({r.strategy for r in frame.itertuples() if getattr(r, "budget_status", None) == "over"})
        return f"Over their memory budget: {', '.join(over)}." if over else ""
    if name == "update_projection":
        from hywu_bench import figures

        static = figures.static_updates(loaded.projections[loaded.projections["scenario"] == scenario])
        return (f"No panel for {', '.join(static)}: {'its' if len(static) == 1 else 'their'} generated updates are "
                f"the same for every instance (variance of the projected points below "
                f"{figures.STATIC_VARIANCE:g})." if static else "")
    probes = loaded.probes[(loaded.probes["scenario"] == scenario) & (loaded.probes["kind"] == name)]
    pairs = probes[probes["i"] < probes["j"]].groupby(["strategy", "i", "j"])["value"].mean()
    if pairs.empty:
        return ""
    (strategy, i, j), value = pairs.idxmin(), pairs.min()
    return f"Most negative pair: {strategy}, experiences {i} and {j} (cosine {value:.2f})."


def _title(name: str) -> str:
    return (tables.TABLES[name][0] if name in tables.TABLES
            else "Figure: " + name.removesuffix("_figure").replace("_", " "))


def scenario_markdown(loaded: tables.Loaded, scenario: str, files: dict[str, list[Path]], base: Path,
                      full: bool = True) -> str:
    """One scenario's section: every table (Markdown inline, CSV and LaTeX linked) and figure, each with a
    paragraph. Not `full` (REPORT.md): the per-cell matrix tables are left to the scenario's own page and
    the paragraphs that are the same for every scenario to the report's end; the facts stay."""
    seeds = sorted(loaded.frame.loc[loaded.frame["scenario"] == scenario, "seed"].unique())
    parts = [(f"Seeds: {', '.join(map(str, seeds))}. Accuracies in percent; mean ± std over seeds "
              f"[95% confidence interval].\n")]
    for name, paths in files.items():
        rel = [p.relative_to(base).as_posix() for p in paths]
        description = DESCRIPTIONS.get(name, "") if full else ""
        if name in tables.TABLES:
            md, cut, rest = paths[1].read_text(encoding="utf-8").partition(tables.MATRICES)
            if cut and full:
                md += rest
            elif cut:
                md = md.rstrip() + "\n\nPer-cell matrices: on the scenario's [own page](README.md).\n"
            links = ", ".join(f"[{'matrix ' if '_matrix' in r else ''}{Path(r).suffix[1:].upper()}]({r})"
                              for r in rel if not r.endswith(".md"))
            text = f"{description} {_facts(loaded, scenario, name)}".strip()
            parts.append(f"### {_title(name)}\n\n" + (f"{text}\n\n" if text else "") + f"{md}\nFiles: {links}.\n")
        else:
            png = next(r for r in rel if r.endswith(".png"))
            pdf = next((r for r in rel if r.endswith(".pdf")), None)
            title = name.removesuffix("_figure").replace("_", " ").capitalize()
            text = f"{description} {_facts(loaded, scenario, name) if name == 'update_projection' else ''}".strip()
            parts.append(f"### Figure: {title}\n\n" + (f"{text}\n\n" if text else "") + f"![{title}]({png})\n\n" +
                         (f"[PDF]({pdf})\n" if pdf else ""))
    return "\n".join(parts)


def index_markdown(loaded: tables.Loaded, sections: list[tuple[str, str]], title: str, intro: str,
                   front: str = "", shown: list[str] | None = None) -> str:
    lines = [f"# {title}\n"]
    if intro:
        lines.append(intro.strip() + "\n")
    if front:
        lines.append(f"## At a glance\n\n{front}")
    lines.append("Scenarios (each with its own page, matrices included; what every table and figure shows: "
                 "[at the end](#what-the-tables-and-figures-show)): " + ", ".join(
        f"[{s}](#{s}) ([page]({s}/{REPORT_DIR}/README.md))" for s, _ in sections) + ".\n")
    if loaded.skipped:
        lines.append("Skipped (unfinished or unreadable) runs:\n")
        lines += [f"- `{p}`: {why}" for p, why in loaded.skipped]
        lines.append("")
    for scenario, section in sections:
        # The section's links are relative to the scenario's _report folder; REPORT.md sits above it.
        prefix = f"{scenario}/{REPORT_DIR}/"
        section = section.replace("](", "](" + prefix).replace("](" + prefix + "#", "](#")
        lines.append(f"## {scenario}\n\n{section}")
    described = [name for name in shown or [] if name in DESCRIPTIONS]
    if described:
        lines.append("## What the tables and figures show\n")
        lines += [f"- **{_title(name).removeprefix('Figure: ').capitalize()}**"
                  f"{' (figure)' if name not in tables.TABLES else ''}: {DESCRIPTIONS[name]}" for name in described]
        lines.append("")
    return "\n".join(lines)
