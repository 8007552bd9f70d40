"""Grids of runs: build the RunSpecs of a (strategy x seed) grid, run the missing ones, report.

`compare` is resumable by construction: a complete run on disk with the same requested spec is reused
(checked here, so no worker is started for it), and an interrupted compare picks up where it stopped.
A failed run is recorded and the others go on; the failures are listed at the end.

Runs go through an `Executor`: `LocalExecutor` runs them one after another in this process,
`ProcessExecutor` in worker processes (spawn context, so CUDA and threads start clean in each). A
SLURM or Ray executor only has to implement `run(specs, out, listener) -> list[Outcome]`.
torch is imported only where a run happens (in `run_one`), so this module is light to import.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, Sequence

from hywu_bench import results
from hywu_bench.config import RunSpec, resolve_spec
from hywu_bench.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    spec: RunSpec
    ok: bool
    path: Path | None = None
    reused: bool = False  # a complete identical run was already on disk
    seconds: float = 0.0
    error: str | None = None  # one line: what went wrong
    details: str | None = None  # the traceback, for the log


class Listener(Protocol):
    """Progress over a grid: called in the parent process, in completion order."""

    def started(self, spec: RunSpec) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


class Executor(Protocol):
    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        """Run every spec (`runner.run(spec, out, overwrite=overwrite)`), calling the listener as runs start
        and finish; never raise for one run's failure."""
        ...


class SilentListener:
    def started(self, spec: RunSpec) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


def run_one(spec: RunSpec, out: str | Path, overwrite: bool = False) -> Outcome:
    """One run, never raising: errors become a failed Outcome (picklable, for worker processes)."""
    t0 = time.perf_counter()
    try:
        from hywu_bench.runner import run

        record = run(spec, out, overwrite=overwrite)
        return Outcome(spec, True, record.path, record.reused, time.perf_counter() - t0)
    except Exception as err:  # any failure of one run must not stop the grid
        return Outcome(spec, False, None, False, time.perf_counter() - t0, f"{type(err).__name__}: {err}",
                       traceback.format_exc())


class LocalExecutor:
    """Runs one after another in this process (no start-up cost; the debugger works)."""

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        outcomes = []
        for spec in specs:
            listener.started(spec)
            outcome = run_one(spec, out, overwrite)
            listener.finished(outcome)
            outcomes.append(outcome)
        return outcomes


def _init_worker(threads: int, plugins: Sequence[str]) -> None:
    import warnings

    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of each taking all of them
    warnings.filterwarnings("ignore")
    try:
        from hywu_bench.cli import _hide_library_warnings

        _hide_library_warnings()
    except ImportError:  # pragma: no cover
        pass
    from hywu_bench.registry import load_builtins, load_entry_points, load_plugin_file

    load_builtins()
    load_entry_points()
    for plugin in plugins:
        load_plugin_file(plugin)


class ProcessExecutor:
    """`workers` processes (spawn), each with cpu_count / workers torch threads."""

    def __init__(self, workers: int, plugins: Sequence[str | Path] = (), threads: int | None = None):
        if workers < 1:
            raise UserError(f"workers must be >= 1 (got {workers})")
        self.workers = workers
        self.plugins = [str(p) for p in plugins]
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.threads, self.plugins))

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        outcomes: list[Outcome] = []
        pool = self._pool()
        try:
            waiting = list(specs)
            running: dict[Any, RunSpec] = {}
            while waiting or running:
                while waiting and len(running) < self.workers:  # submit as slots free, so "started" is true
                    spec = waiting.pop(0)
                    listener.started(spec)
                    running[pool.submit(run_one, spec, out, overwrite)] = spec
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    spec = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool as err:  # a worker died (killed, out of memory): this run fails
                        broken = True
                        outcome = Outcome(spec, False, error=f"worker process died: {err}")
                    listener.finished(outcome)
                    outcomes.append(outcome)
                if broken:  # the runs still in the broken pool are lost too; the rest get a fresh pool
                    for spec in running.values():
                        outcome = Outcome(spec, False, error="worker pool broke while this run was in it")
                        listener.finished(outcome)
                        outcomes.append(outcome)
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._pool()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return outcomes


def make_executor(workers: int, plugins: Sequence[str | Path] = ()) -> Executor:
    return LocalExecutor() if workers == 1 else ProcessExecutor(workers, plugins)


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


def stored_outcome(spec: RunSpec, out: str | Path) -> Outcome | None:
    """A reused Outcome if a complete run with exactly this requested spec is on disk, else None."""
    path = results.run_dir(out, _folder(spec), spec.run_name, spec.seed)
    if not results.is_complete(path):
        return None
    try:
        stored = json.loads((path / "config.json").read_text()).get("requested_spec")
    except (OSError, ValueError):
        return None
    if stored != json.loads(json.dumps(spec.to_dict())):
        return None  # the runner explains the clash (a different configuration under the same name)
    return Outcome(spec, True, path, reused=True)


@dataclass
class CompareResult:
    outcomes: list[Outcome]
    report: Any = None  # report.Rendered for the scenario, when a report was written

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
    out = Path(out)
    results.check_writable(out)
    specs = grid(scenario, strategies, seeds, sets, flags)
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
    executor = executor or make_executor(workers)
    for outcome in executor.run([specs[k] for k in pending], out, listener, overwrite):
        by_spec[next(k for k in pending if specs[k] == outcome.spec and k not in by_spec)] = outcome
    outcomes = [by_spec[k] for k in range(len(specs))]
    for failed in (o for o in outcomes if not o.ok):
        log.warning("run %s seed %d failed: %s", failed.spec.run_name, failed.spec.seed, failed.error)
        if failed.details:
            log.debug("%s", failed.details)
    result = CompareResult(outcomes)
    if write_report and any(o.ok for o in outcomes):
        from hywu_bench.paper import render

        result.report = render(out, [_folder(specs[0])], write_index=False)
    return result
