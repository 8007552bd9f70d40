"""Grids of runs: build the RunSpecs of a (strategy x seed) grid, run the missing ones, report.

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from hywu_bench import results
from hywu_bench.config import RunSpec, resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.executors import (Executor, ExecutorOptions, Listener, LocalExecutor, Outcome, ProcessExecutor,
                                  SilentListener, make_executor, run_one)
from hywu_bench.executors.base import stored_outcome

__all__ = ["CompareResult", "Executor", "ExecutorOptions", "Listener", "LocalExecutor", "Outcome", "ProcessExecutor",
           "SilentListener", "compare", "grid", "make_executor", "run_one", "run_specs", "stored_outcome"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# The grid


def _sets_for(strategy: str, sets: Sequence[str], grid: Sequence[str], scenario: str) -> list[str]:
    """The --set pairs that apply to one strategy of the grid.

    `replay.mem_size=200` applies to replay only; a strategy option (`mem_size=200` or
    `strategy.mem_size=200`) applies to the strategies of the grid that declare it; everything else to all.
    """
    from hywu_bench.registry import SCENARIOS, STRATEGIES

    spec_fields = {f.name for f in fields(RunSpec)}
    out = []
    for pair in sets:
        key = pair.partition("=")[0].strip()
        prefix, dot, option = key.partition(".")
        if dot and prefix in grid:
            if prefix == strategy:
                out.append(f"strategy.{option}={pair.partition('=')[2]}")
            continue
        name = option if dot and prefix == "strategy" else (key if not dot else None)
        if name and name not in spec_fields and not (not dot and name in SCENARIOS.get(scenario).option_defaults()):
            declared = [s for s in grid if name in STRATEGIES.get(s).option_defaults()]
            if declared and strategy not in declared:
                continue
        out.append(pair)
    return out


def grid(scenario: str, strategies: Sequence[str], seeds: Sequence[int], sets: Sequence[str] = (),
         flags: dict[str, Any] | None = None) -> list[RunSpec]:
    """Every (strategy, seed) RunSpec, validated before anything runs; strategy-major order, so parallel
    workers start on different seeds and later runs reuse each seed's cached warm start."""
    from hywu_bench.registry import STRATEGIES, load_builtins

    load_builtins()
    if not strategies or not seeds:
        raise UserError("compare needs at least one strategy and one seed.")
    names = [STRATEGIES.get(s).name for s in strategies]  # unknown names fail here, with a hint
    if len(set(names)) != len(names):
        raise UserError(f"a strategy is listed twice: {', '.join(strategies)}")
    return [resolve_spec(flags={**(flags or {}), "scenario": scenario, "strategy": name, "seed": seed},
                         sets=_sets_for(name, sets, names, scenario))
            for name in names for seed in seeds]


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
    specs = grid(scenario, strategies, seeds, sets, flags)
    outcomes = run_specs(specs, out, executor or make_executor(workers), listener, overwrite)
    result = CompareResult(outcomes)
    if write_report and any(o.ok for o in outcomes):
        from hywu_bench.pages import render

        result.report = render(out, [_folder(specs[0])], write_index=False)
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
