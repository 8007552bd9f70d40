"""The report's pages: every table and figure of a scenario, with a paragraph each, as Markdown.

`render` writes every table and figure of each scenario into <out>/<scenario>/_report/ (with a README.md
embedding them) and <out>/REPORT.md embedding all scenarios. Rendering imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hywu_bench import results, tables


REPORT_DIR = "_report"
DESCRIPTIONS = {
    "forgetting": "Final average accuracy (ACC), accuracy right after learning each experience (learning acc.), "
                  "backward transfer (BWT, Lopez-Paz & Ranzato 2017), average max-forgetting (Chaudhry et al. "
                  "2018), forward transfer (FWT) against the untrained model, and costs: training time, "
                  "training samples per second, trainable parameters, and the bytes kept between experiences "
                  "(buffers, importances, old models, anchors). Bold: the best continual method per column; "
                  "† marks references (joint/cumulative training, the task-oracle) that are not ranked.",
    "step_interference": "How much learning experience i cost each earlier experience j, in accuracy points "
                         "(I[i, j] = R[i-1, j] - R[i, j]): the mean over all such pairs and the worst single step; "
                         "the matrices below are means over seeds.",
    "gradient_conflict": "Cosine similarity between the loss gradients of two experiences on the method's "
                         "trainable parameters, on held-out test samples after the final experience. Negative "
                         "values mean one shared update cannot serve both (the HY-WU paper reports about -0.3 "
                         "between conflicting editing tasks under a shared update).",
    "gradient_conflict_updates": "The same cosine, taken with respect to the generated updates themselves: "
                                 "whether the conflict survives in the space the generator writes to.",
    "operator_separation": "Cosine similarity between the mean generated update of each pair of experiences: "
                           "low values mean the generator puts the experiences in different regions.",
    "accuracy_matrices": "Accuracy on every test experience (columns) after training each experience (rows), "
                         "mean over seeds. Forgetting shows as a fading lower triangle.",
    "accuracy_over_stream": "Accuracy on each experience as the stream goes on (bands: ±1 std over seeds); the "
                            "first panel is the average over the experiences seen so far, the dotted line marks "
                            "when each experience was learnt.",
    "accuracy_vs_forgetting": "Final average accuracy against average max-forgetting (±1 std); up and to the "
                              "left is better. Offline references are horizontal lines.",
    "forgetting_bars": "Average max-forgetting per method with ±1 std; dots are single seeds.",
    "step_interference_figure": "The step-interference matrices as heatmaps: red cells are experiences hurt "
                                "by a later one.",
    "accuracy_vs_memory": "Final average accuracy against the bytes a method stores between experiences "
                          "(log scale; methods storing nothing sit at 0).",
    "update_projection": "The generated updates of held-out instances on their first two principal "
                         "components, coloured by experience (one seed).",
}


@dataclass
class Rendered:
    out: Path
    scenarios: dict[str, dict[str, list[Path]]]  # scenario -> table/figure name -> files
    skipped: list[tuple[Path, str]]
    index: Path | None = None  # REPORT.md


def render(out: str | Path, scenarios: list[str] | None = None, write_index: bool = True,
           title: str = "hywu-bench report", intro: str = "") -> Rendered:
    """Tables and figures of every (or the given) scenario into <out>/<scenario>/_report/, each with a
    README.md; with `write_index`, also <out>/REPORT.md embedding all of them."""
    from hywu_bench import figures  # matplotlib only when something is drawn

    out = Path(out)
    loaded = tables.load(out, scenarios)
    present = list(dict.fromkeys(loaded.frame["scenario"]))
    rendered = Rendered(out, {}, loaded.skipped)
    sections = []
    for scenario in [s for s in (scenarios or present) if s in present]:  # the caller's order
        dest = out / scenario / REPORT_DIR
        written = tables.write_tables(loaded, scenario, dest)
        drawn = figures.write_figures(loaded, scenario, dest)
        rendered.scenarios[scenario] = {**written, **{f"{k}_figure" if k in written else k: v for k, v in drawn.items()}}
        section = scenario_markdown(loaded, scenario, rendered.scenarios[scenario], dest)
        results.atomic_write_text(dest / "README.md", f"# {scenario}\n\n" + section)
        sections.append((scenario, section))
    if write_index:
        rendered.index = out / "REPORT.md"
        results.atomic_write_text(rendered.index, index_markdown(loaded, sections, title, intro))
    return rendered


def _facts(loaded: tables.Loaded, scenario: str, name: str) -> str:
    """One data-driven sentence for a table: who is best, how large the conflict is."""
    frame = loaded.frame[loaded.frame["scenario"] == scenario]
    if name == "forgetting":
        per = tables.run_metrics(frame)
        ranked = per[~per["strategy"].isin(tables.REFERENCES)].groupby("strategy")[["acc", "forgetting"]].mean()
        if ranked.empty:
            return ""
        best, least = ranked["acc"].idxmax(), ranked["forgetting"].idxmin()
        return (f"Highest final accuracy: **{best}** ({100 * ranked.at[best, 'acc']:.1f} %); lowest forgetting: "
                f"**{least}** ({100 * ranked.at[least, 'forgetting']:.1f} points).")
    probes = loaded.probes[(loaded.probes["scenario"] == scenario) & (loaded.probes["kind"] == name)]
    pairs = probes[probes["i"] < probes["j"]].groupby(["strategy", "i", "j"])["value"].mean()
    if pairs.empty:
        return ""
    (strategy, i, j), value = pairs.idxmin(), pairs.min()
    return f"Most negative pair: {strategy}, experiences {i} and {j} (cosine {value:.2f})."


def scenario_markdown(loaded: tables.Loaded, scenario: str, files: dict[str, list[Path]], base: Path) -> str:
    """One scenario's section: every table (Markdown inline, CSV and LaTeX linked) and figure, each with a paragraph."""
    seeds = sorted(loaded.frame.loc[loaded.frame["scenario"] == scenario, "seed"].unique())
    parts = [f"Seeds: {', '.join(map(str, seeds))}. Accuracies in percent; mean ± std over seeds.\n"]
    for name, paths in files.items():
        rel = [p.relative_to(base).as_posix() for p in paths]
        description = DESCRIPTIONS.get(name, "")
        if name in tables.TABLES:
            md = paths[1].read_text(encoding="utf-8")
            links = ", ".join(f"[{'matrix ' if '_matrix' in r else ''}{Path(r).suffix[1:].upper()}]({r})"
                              for r in rel if not r.endswith(".md"))
            parts.append(f"### {tables.TABLES[name][0]}\n\n{description} {_facts(loaded, scenario, name)}\n\n{md}\n"
                         f"Files: {links}.\n")
        else:
            png = next(r for r in rel if r.endswith(".png"))
            pdf = next((r for r in rel if r.endswith(".pdf")), None)
            title = name.removesuffix("_figure").replace("_", " ").capitalize()
            parts.append(f"### Figure: {title}\n\n{description}\n\n![{title}]({png})\n\n" +
                         (f"[PDF]({pdf})\n" if pdf else ""))
    return "\n".join(parts)


def index_markdown(loaded: tables.Loaded, sections: list[tuple[str, str]], title: str, intro: str) -> str:
    lines = [f"# {title}\n"]
    if intro:
        lines.append(intro.strip() + "\n")
    lines.append("Scenarios: " + ", ".join(f"[{s}](#{s})" for s, _ in sections) + ".\n")
    if loaded.skipped:
        lines.append("Skipped (unfinished or unreadable) runs:\n")
        lines += [f"- `{p}`: {why}" for p, why in loaded.skipped]
        lines.append("")
    for scenario, section in sections:
        # The section's links are relative to the scenario's _report folder; REPORT.md sits above it.
        prefix = f"{scenario}/{REPORT_DIR}/"
        section = section.replace("](", "](" + prefix).replace("](" + prefix + "#", "](#")
        lines.append(f"## {scenario}\n\n{section}")
    return "\n".join(lines)
