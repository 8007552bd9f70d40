"""Suites: the comparisons behind `hywu-bench paper`, declared in TOML (the shipped one: `paper.toml` here).

A suite declares, per scale, the scenarios, strategies (variants too: `replay[mem_size=100,500]`), seeds and
settings (`memory_budget=match:hywu` too) that `run_suite` compares
(resumably) before rendering every table, figure and REPORT.md, and optionally where they run (an
`[SCALE.executor]` table: `kind = "slurm"` and the executor's keys, which command-line flags override).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from hywu_bench import results, variants
from hywu_bench.errors import UserError
from hywu_bench.pages import render
from hywu_bench.sweep import CompareResult, ExecutorOptions, Listener, make_executor, run_planned
from hywu_bench.sweep import plan as plan_grid

SUITES = Path(__file__).parent


@dataclass
class SuiteEntry:
    scenario: str
    strategies: list[str]
    seeds: list[int]
    sets: list[str] = field(default_factory=list)


@dataclass
class SuitePlan:
    title: str
    intro: str
    workers: int
    entries: list[SuiteEntry]
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    executor: dict[str, Any] = field(default_factory=dict)  # the scale's [executor] table, if any

    @property
    def n_runs(self) -> int:
        return sum(len(variants.parse_all(e.strategies)) * len(e.seeds) for e in self.entries)


def load_suite(path: str | Path | None, scale: str) -> SuitePlan:
    """The entries of one scale of a suite file; strategies or scenarios not registered here are left out
    with a note (so a suite can name methods that a checkout does not have yet)."""
    from hywu_bench.config import load_toml
    from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins

    load_builtins()
    path = Path(path) if path else SUITES / "paper.toml"
    data = load_toml(path)
    scales = {k: v for k, v in data.items() if isinstance(v, dict)}
    if scale not in scales:
        raise UserError(f"suite '{path}' has no scale '{scale}'; it has: {', '.join(scales) or 'none'}.")
    section = scales[scale]
    executor = section.get("executor", data.get("executor", {}))
    if not isinstance(executor, dict):
        raise UserError(f"{path}: {scale}.executor must be a table ([{scale}.executor]), got {executor!r}.")
    plan = SuitePlan(data.get("title", "hywu-bench report"), section.get("intro", data.get("intro", "")),
                     int(section.get("workers", 1)), [], executor=dict(executor))
    for k, item in enumerate(section.get("scenarios", [])):
        where = f"{path}: {scale}.scenarios[{k}]"
        unknown = sorted(set(item) - {"scenario", "strategies", "seeds", "set"})
        if unknown or "scenario" not in item or "strategies" not in item:
            raise UserError(f"{where}: needs 'scenario' and 'strategies' (and may have 'seeds', 'set'); "
                            f"unknown keys: {', '.join(unknown) or 'none'}.")
        if item["scenario"] not in SCENARIOS:
            plan.notes.append(f"scenario '{item['scenario']}' is not registered here; left out")
            continue
        base = {s: variants.parse_all([s])[0].strategy for s in item["strategies"]}  # replay[mem_size=..] -> replay
        available = [s for s in item["strategies"] if base[s] in STRATEGIES]
        missing = [s for s in item["strategies"] if base[s] not in STRATEGIES]
        if missing:
            plan.notes.append(f"{item['scenario']}: strategies {', '.join(missing)} are not registered here; left out")
        plan.entries.append(SuiteEntry(item["scenario"], available, [int(s) for s in item.get("seeds", [0])],
                                       [str(s) for s in item.get("set", [])]))
    if not plan.entries:
        raise UserError(f"suite '{path}' scale '{scale}' has no scenario that can run here.")
    return plan


def run_suite(plan: SuitePlan, out: str | Path, *, workers: int | None = None, device: str | None = None,
              data_root: str | None = None, overwrite: bool = False, plugins: Sequence[str | Path] = (),
              listener: Listener | None = None, executor: ExecutorOptions | None = None) -> CompareResult:
    """Every entry's missing runs (resumable), then all tables and figures and <out>/REPORT.md.

    `executor` says where the runs execute (default: local, with `workers` or the suite's workers)."""
    t0 = time.perf_counter()
    out = Path(out)
    options = executor or ExecutorOptions.from_pairs(None, table=plan.executor)
    if options.kind == "local" and options.workers is None:
        options = replace(options, workers=workers or plan.workers)
    runner = make_executor(options, plugins)
    results.check_writable(out)
    planned = [p for entry in plan.entries  # every grid is built (and checked) before anything runs
               for p in plan_grid(entry.scenario, entry.strategies, entry.seeds, entry.sets,
                                  {"device": device, "data_root": data_root})]
    outcomes = run_planned(planned, out, runner, listener, overwrite)  # one submission (two with match:)
    folders = list(dict.fromkeys(o.spec.scenario_label for o in outcomes))
    rendered = render(out, folders, title=plan.title, intro=plan.intro)
    return CompareResult(outcomes, rendered, time.perf_counter() - t0)
