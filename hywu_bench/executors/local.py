"""`--executor local`: runs one after another in this process, or in a pool of worker processes (`--workers N`)."""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from hywu_bench.config import RunSpec
from hywu_bench.errors import UserError
from hywu_bench.executors.base import Listener, Outcome, default_jobs_folder, prepare_worker, run_one, with_log


class LocalExecutor:
    """Runs one after another in this process (no start-up cost; the debugger works)."""

    loggers: tuple[str, ...] = ()  # Avalanche loggers on every run (`--logger`)

    def __init__(self, jobs_folder: str | Path | None = None):
        self.jobs_folder = Path(jobs_folder) if jobs_folder else None

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        jobs = self.jobs_folder or default_jobs_folder(out)
        outcomes = []
        for spec in specs:
            listener.started(spec)
            outcome = with_log(run_one(spec, out, overwrite, loggers=self.loggers), jobs)
            listener.finished(outcome)
            outcomes.append(outcome)
        return outcomes


def _init_worker(threads: int, plugins: Sequence[str]) -> None:
    prepare_worker(threads, plugins)


class ProcessExecutor:
    """`workers` processes (spawn, so CUDA and threads start clean in each), each with cpu_count / workers
    torch threads."""

    loggers: tuple[str, ...] = ()  # Avalanche loggers on every run (`--logger`)

    def __init__(self, workers: int, plugins: Sequence[str | Path] = (), threads: int | None = None,
                 jobs_folder: str | Path | None = None):
        if workers < 1:
            raise UserError(f"workers must be >= 1 (got {workers})")
        self.workers = workers
        self.plugins = [str(p) for p in plugins]
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.jobs_folder = Path(jobs_folder) if jobs_folder else None

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.threads, self.plugins))

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        jobs = self.jobs_folder or default_jobs_folder(out)
        outcomes: list[Outcome] = []

        def finish(outcome: Outcome) -> None:
            outcome = with_log(outcome, jobs)
            listener.finished(outcome)
            outcomes.append(outcome)

        pool = self._pool()
        try:
            waiting = list(specs)
            running: dict[Any, RunSpec] = {}
            while waiting or running:
                while waiting and len(running) < self.workers:  # submit as slots free, so "started" is true
                    spec = waiting.pop(0)
                    listener.started(spec)
                    running[pool.submit(run_one, spec, out, overwrite, loggers=self.loggers)] = spec
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    spec = running.pop(future)
                    try:
                        finish(future.result())
                    except BrokenProcessPool as err:  # a worker died (killed, out of memory): this run fails
                        broken = True
                        finish(Outcome(spec, False, error=f"worker process died: {err}"))
                if broken:  # the runs still in the broken pool are lost too; the rest get a fresh pool
                    for spec in running.values():
                        finish(Outcome(spec, False, error="worker pool broke while this run was in it"))
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._pool()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return outcomes
