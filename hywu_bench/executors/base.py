"""The executor interface: run a list of RunSpecs, each an idempotent call that writes its own results folder.

Every executor calls `run_one` somewhere (in this process, a worker process, a SLURM job, a Ray task).
`run_one` is `runner.run` that never raises: a complete identical folder is reused, an incomplete one is
resumed from its checkpoint when asked (a requeued job) or started over, so an engine's retry or requeue
is always safe. Failures come back as an `Outcome` with one line of error and, where the executor keeps
one, the path of a log holding the traceback.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from hywu_bench import results
from hywu_bench.config import RunSpec

log = logging.getLogger(__name__)

JOBS_FOLDER = ".hywu-bench-jobs"  # beside the results folder, never inside it


@dataclass
class Outcome:
    spec: RunSpec
    ok: bool
    path: Path | None = None
    reused: bool = False  # a complete identical run was already on disk
    seconds: float = 0.0
    error: str | None = None  # one line: what went wrong
    details: str | None = None  # the traceback, for the log
    log: Path | None = None  # where the failure's log is (a job's stderr, or a traceback file)


class Listener(Protocol):
    """Progress over a grid: called in the parent process, in completion order."""

    def started(self, spec: RunSpec) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


class Executor(Protocol):
    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        """Run every spec (`runner.run(spec, out, overwrite=overwrite)`), calling the listener as runs start
        (or are submitted, on a cluster) and finish; never raise for one run's failure."""
        ...


class SilentListener:
    def started(self, spec: RunSpec) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


def run_one(spec: RunSpec, out: str | Path, overwrite: bool = False, *, resume: bool = False,
            job_id: str | None = None) -> Outcome:
    """One run, never raising: errors become a failed Outcome (picklable, for workers, jobs and tasks).

    `job_id` is the engine's name for this job, the same across its retries and requeues, so a lock left
    by an earlier attempt of the same job (possibly on another host) is taken over.
    """
    t0 = time.perf_counter()
    try:
        from hywu_bench.runner import run

        record = run(spec, out, overwrite=overwrite, resume=resume, job_id=job_id)
        return Outcome(spec, True, record.path, record.reused, time.perf_counter() - t0)
    except Exception as err:  # any failure of one run must not stop the grid
        return Outcome(spec, False, None, False, time.perf_counter() - t0, f"{type(err).__name__}: {err}",
                       traceback.format_exc())


_PREPARED: dict[str, object] = {}


def stored_outcome(spec: RunSpec, out: str | Path) -> Outcome | None:
    """A reused Outcome if `results.verdict` says the stored run may be reused, else None (the runner then
    runs it, or explains why it may not)."""
    stored = results.verdict(spec, out)
    return Outcome(spec, True, stored.path, reused=True) if stored.kind == "reuse" else None


def prepare_worker(threads: int, plugins: Sequence[str]) -> None:
    """Once per process: torch threads, then what every hywu-bench process sets up (`setup_process`)."""
    import torch

    from hywu_bench.process import setup_process

    torch.set_num_threads(max(1, int(threads)))  # workers share the cores instead of each taking all of them
    if _PREPARED.get("plugins") == list(plugins):
        return
    warnings.filterwarnings("ignore")
    setup_process(plugins)
    _PREPARED["plugins"] = list(plugins)


def default_jobs_folder(out: str | Path) -> Path:
    """<out's parent>/.hywu-bench-jobs/<out's name>: on the same (shared) filesystem as the results, outside them."""
    out = Path(out).resolve()
    return out.parent / JOBS_FOLDER / out.name


def write_failure_log(jobs_folder: Path, outcome: Outcome) -> Path:
    """The traceback of a failed run, as text, at <jobs folder>/logs/<scenario>/<run>-seed<k>.log."""
    spec = outcome.spec
    path = jobs_folder / "logs" / spec.scenario_label / f"{spec.run_name}-seed{spec.seed}.log"
    text = f"{outcome.error}\n\n{outcome.details or ''}"
    try:
        results.atomic_write_text(path, text)
    except OSError as err:  # a log must never cost the sweep its summary
        log.warning("could not write the failure log %s: %s", path, err)
        return path
    return path


def with_log(outcome: Outcome, jobs_folder: Path) -> Outcome:
    """A failed outcome gets a log file with its traceback (unless its executor already keeps one)."""
    if not outcome.ok and outcome.log is None:
        outcome.log = write_failure_log(jobs_folder, outcome)
    return outcome


def threads_per_run(requested: int | None) -> int:
    """Torch threads for one run: the request, else SLURM's CPUs per task, else 1."""
    if requested:
        return requested
    return int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1)
