"""Grids of runs: build the RunSpecs of a (strategy x seed) grid, run the missing ones, report.

A grid's strategies may be variants (`replay[mem_size=100,200]`, `hywu_bench.variants`), each stored under
its own run name; two runs that would share a folder are refused before anything runs. With
`--set memory_budget=match:STRATEGY`, STRATEGY's runs go first and every other run of seed k gets the
bytes STRATEGY's seed-k run stored as its memory budget (`run_planned`); the spec a matched run stores
carries those bytes, so a rerun of the same command finds and reuses it.

`compare` is resumable by construction: a complete run on disk with the same requested spec is reused
(checked here, so no worker, job or task is started for it), and an interrupted compare picks up where it
stopped. A failed run is recorded and the others go on; the failures are listed at the end.

Runs go through an executor (`hywu_bench.executors`): this process or a pool of processes (`local`),
submitit on this machine or a SLURM cluster (`submitit-local`, `slurm`), or a Ray cluster (`ray`).
torch is imported only where a run happens, so this module is light to import.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

from hywu_bench import results, variants
from hywu_bench.config import RunSpec, resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.executors import (
    Executor,
    ExecutorOptions,
    Listener,
    LocalExecutor,
    Outcome,
    ProcessExecutor,
    SilentListener,
    make_executor,
    run_one,
)
from hywu_bench.executors.base import stored_outcome
from hywu_bench.memory import check_budget_request

__all__ = ["CompareResult", "Executor", "ExecutorOptions", "Listener", "LocalExecutor", "Outcome", "Planned",
           "ProcessExecutor", "SilentListener", "compare", "grid", "make_executor", "plan", "run_one", "run_planned",
           "run_specs", "stored_outcome"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# The grid


def _sets_for(strategy: str, sets: Sequence[str], grid: Sequence[str], scenario: str) -> list[str]:
    """The --set pairs that apply to one strategy of the grid.

    `replay.mem_size=200` applies to replay only (`replay.epochs=3`, a RunSpec field replay has no option
    for, too); a strategy option (`mem_size=200` or `strategy.mem_size=200`) applies to the strategies of
    the grid that declare it; everything else to all.
    """
    from hywu_bench.registry import SCENARIOS, STRATEGIES

    spec_fields = {f.name for f in fields(RunSpec)}
    out = []
    for pair in sets:
        key = pair.partition("=")[0].strip()
        prefix, dot, option = key.partition(".")
        if dot and prefix in grid:
            if prefix == strategy:
                own = option not in spec_fields or option in STRATEGIES.get(strategy).option_defaults()
                out.append(f"{'strategy.' if own else ''}{option}={pair.partition('=')[2]}")
            continue
        name = option if dot and prefix == "strategy" else (key if not dot else None)
        if name and name not in spec_fields and not (not dot and name in SCENARIOS.get(scenario).option_defaults()):
            declared = [s for s in grid if name in STRATEGIES.get(s).option_defaults()]
            if declared and strategy not in declared:
                continue
        out.append(pair)
    return out


@dataclass(frozen=True)
class Planned:
    """One run of a grid. `match`: the run name whose stored bytes of the same seed become this run's
    memory budget (`--set memory_budget=match:NAME`); its `spec` then has no budget yet."""

    spec: RunSpec
    match: str | None = None


def plan(scenario: str, strategies: Sequence[str], seeds: Sequence[int], sets: Sequence[str] = (),
         flags: dict[str, Any] | None = None) -> list[Planned]:
    """Every (strategy variant, seed) run, validated before anything runs; strategy-major order, so
    parallel workers start on different seeds and later runs reuse each seed's cached warm start.
    `strategies` may hold variants (`replay[mem_size=100,200]`, hywu_bench.variants)."""
    from hywu_bench.registry import STRATEGIES, load_builtins

    load_builtins()
    if not strategies or not seeds:
        raise UserError("compare needs at least one strategy and one seed.")
    found = variants.parse_all(list(strategies))
    labels = [v.label for v in found]
    if len(set(labels)) != len(labels):
        raise UserError(f"a strategy is listed twice: {', '.join(strategies)}")
    found = [replace(v, strategy=STRATEGIES.get(v.strategy).name) for v in found]  # unknown names fail here
    names = list(dict.fromkeys(v.strategy for v in found))
    planned = []
    for variant in found:
        own = _variant_sets(variant, _sets_for(variant.strategy, sets, names, scenario))
        own, match = _take_match(own)
        for seed in seeds:
            spec = resolve_spec(flags={**(flags or {}), "scenario": scenario, "strategy": variant.strategy,
                                       "seed": seed}, sets=own)
            planned.append(Planned(spec, match))
    _check_names(planned)
    planned = _resolve_targets(planned)
    for p in planned:  # a budget is coming: refuse now what it would contradict, before anything runs
        if p.match:
            check_budget_request(STRATEGIES.get(p.spec.strategy), 1, p.spec.strategy_options)
    return planned


def grid(scenario: str, strategies: Sequence[str], seeds: Sequence[int], sets: Sequence[str] = (),
         flags: dict[str, Any] | None = None) -> list[RunSpec]:
    """Every run's RunSpec (see `plan`); a grid whose budgets come from another run (`match:`) is run
    with `compare`, which runs that one first."""
    planned = plan(scenario, strategies, seeds, sets, flags)
    if any(p.match for p in planned):
        raise UserError("memory_budget=match:STRATEGY takes the budget from runs that do not exist yet; use "
                        "compare (it runs STRATEGY first).")
    return [p.spec for p in planned]


def _variant_sets(variant: variants.Variant, sets: list[str]) -> list[str]:
    """A variant's own pairs after the --set pairs (they win), and its run name."""
    from hywu_bench.registry import STRATEGIES

    if not variant.pairs:
        return sets
    options = STRATEGIES.get(variant.strategy).option_defaults()
    spec_fields = {f.name for f in fields(RunSpec)}
    base = next((p.partition("=")[2].strip() for p in reversed(sets) if p.partition("=")[0].strip() == "name"),
                variant.strategy)
    own = [f"{'' if k in spec_fields and k not in options else 'strategy.'}{k}={v}" for k, v in variant.pairs]
    return [*sets, *own, f"name={variant.run_name(base)}"]


def _take_match(sets: list[str]) -> tuple[list[str], str | None]:
    """The sets without `memory_budget=match:NAME` pairs, and NAME, or None. The last `memory_budget` pair
    wins, as with any --set: a variant's own budget (`replay[memory_budget=1MiB]`, appended after the
    grid's pairs) cancels the grid's `match:`."""
    match, kept = None, []
    for pair in sets:
        key, _, value = (t.strip() for t in pair.partition("="))
        if key == "memory_budget" and value.lower().startswith("match:"):
            match = value.split(":", 1)[1].strip()
            if not match:
                raise UserError("memory_budget=match: names no strategy; write e.g. memory_budget=match:hywu.")
            continue
        if key in ("memory_budget", "strategy.memory_budget"):
            match = None
        kept.append(pair)
    return kept, match


def _check_names(planned: list[Planned]) -> None:
    """Two runs of a grid stored in one folder would overwrite each other: refused, with the fix."""
    seen: dict[tuple[str, str, int], str] = {}
    for p in planned:
        key = (p.spec.scenario_label, p.spec.run_name, p.spec.seed)
        if key in seen and seen[key] != p.spec.strategy:
            raise UserError(f"'{seen[key]}' and '{p.spec.strategy}' would both be stored as '{p.spec.run_name}'; "
                            f"--set name=... names every strategy of the grid: name one with STRATEGY.name=X.")
        if key in seen:
            raise UserError(f"two runs of '{p.spec.strategy}' would both be stored as '{p.spec.run_name}' "
                            f"(seed {p.spec.seed}); give them different variant values or names.")
        seen[key] = p.spec.strategy


def _resolve_targets(planned: list[Planned]) -> list[Planned]:
    """`match:NAME` names a run of the grid (its run name, or a strategy with one run name in it); the
    runs it names run on their own settings and cannot take their budget from another run themselves."""
    names = list(dict.fromkeys(p.spec.run_name for p in planned))
    targets = []
    for p in planned:
        if p.match is None:
            targets.append(None)
            continue
        by_strategy = list(dict.fromkeys(q.spec.run_name for q in planned if q.spec.strategy == p.match))
        target = p.match if p.match in names else (by_strategy[0] if len(by_strategy) == 1 else None)
        if target is None:
            raise UserError(f"memory_budget=match:{p.match}: '{p.match}' is not a run of this grid ("
                            f"{', '.join(names)}); add it to --strategies or match one of these.")
        targets.append(None if target == p.spec.run_name else target)  # the matched runs keep their own memory
    matched = {p.spec.run_name for p, t in zip(planned, targets) if t is not None}
    chained = sorted(set(t for t in targets if t is not None) & matched)
    if chained:
        raise UserError(f"memory_budget=match: '{chained[0]}' takes its own budget from another run; match a "
                        f"run that has none.")
    return [Planned(p.spec, t) for p, t in zip(planned, targets)]


def run_planned(planned: Sequence[Planned], out: str | Path, executor: Executor, listener: Listener | None = None,
                overwrite: bool = False) -> list[Outcome]:
    """Every planned run: first the runs others match (`match:`) with every run that needs no budget from
    them, then the matched runs, each with the stored bytes of its target's run of the same seed as its
    budget (paired seeds). A matched run whose target failed fails too. Outcomes in the order of `planned`."""
    out, listener = Path(out), listener or SilentListener()
    first = [k for k, p in enumerate(planned) if p.match is None]
    outcomes = dict(zip(first, run_specs([planned[k].spec for k in first], out, executor, listener, overwrite)))
    by_run = {(o.spec.scenario_label, o.spec.run_name, o.spec.seed): o for o in outcomes.values()}
    second, specs = [], []
    for k, p in enumerate(planned):
        if p.match is None:
            continue
        budget, why = _matched_bytes(by_run[(p.spec.scenario_label, p.match, p.spec.seed)])
        if budget is None:
            failed = Outcome(p.spec, False, error=f"its budget is the memory of {p.match} seed {p.spec.seed}, "
                                                  f"which {why}")
            listener.started(p.spec)
            listener.finished(failed)
            outcomes[k] = failed
        else:
            second.append(k)
            specs.append(p.spec.with_updates(memory_budget=budget))
    outcomes.update(zip(second, run_specs(specs, out, executor, listener, overwrite)))
    return [outcomes[k] for k in range(len(planned))]


def _matched_bytes(target: Outcome) -> tuple[int | None, str]:
    """The stored bytes of a finished target run, or None and why not."""
    if not target.ok or target.path is None:
        return None, "failed"
    stored = results.load_run(target.path).metrics.get("stored_memory_bytes")
    if not stored:
        return None, "stored no memory (0 bytes): nothing to match"
    return int(stored), ""


def _folder(spec: RunSpec) -> str:
    """The scenario's results folder (a scenario read from a file is named after the file too)."""
    return spec.scenario_label


@dataclass
class CompareResult:
    outcomes: list[Outcome]
    report: Any = None  # report.Rendered for the scenario, when a report was written
    seconds: float = 0.0  # wall time of the whole sweep, report included

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def compare(scenario: str, strategies: Sequence[str], seeds: Sequence[int], out: str | Path = "results", *,
            workers: int = 1, sets: Sequence[str] = (), flags: dict[str, Any] | None = None,
            executor: Executor | None = None, listener: Listener | None = None,
            write_report: bool = True, overwrite: bool = False) -> CompareResult:
    """Run every missing (strategy, seed) run of the grid, then write its tables and figures.

    A complete run with the same requested spec is always reused; `overwrite` replaces a stored run whose
    configuration differs (without it, that run fails with a message saying so). Returns every Outcome
    (reused, new, failed) in grid order; the report goes to <out>/<scenario>/_report/.
    """
    t0 = time.perf_counter()
    out = Path(out)
    results.check_writable(out)
    planned = plan(scenario, strategies, seeds, sets, flags)
    outcomes = run_planned(planned, out, executor or make_executor(workers), listener, overwrite)
    result = CompareResult(outcomes)
    if write_report and any(o.ok for o in outcomes):
        from hywu_bench.pages import render

        result.report = render(out, [_folder(planned[0].spec)], write_index=False)
    result.seconds = time.perf_counter() - t0
    return result


def run_specs(specs: Sequence[RunSpec], out: str | Path, executor: Executor, listener: Listener | None = None,
              overwrite: bool = False) -> list[Outcome]:
    """Reuse the complete identical runs, hand the rest to the executor in one go (one job array on
    SLURM); every Outcome in the order of `specs`."""
    out = Path(out)
    listener = listener or SilentListener()
    by_spec: dict[int, Outcome] = {}
    pending = []
    for k, spec in enumerate(specs):
        stored = stored_outcome(spec, out)
        if stored is None:
            pending.append(k)
        else:
            listener.started(spec)
            listener.finished(stored)
            by_spec[k] = stored
    for outcome in executor.run([specs[k] for k in pending], out, listener, overwrite):
        by_spec[next(k for k in pending if specs[k] == outcome.spec and k not in by_spec)] = outcome
    outcomes = [by_spec[k] for k in range(len(specs))]
    for failed in (o for o in outcomes if not o.ok):
        log.warning("run %s seed %d failed: %s", failed.spec.run_name, failed.spec.seed, failed.error)
        if failed.details:
            log.debug("%s", failed.details)
    return outcomes
