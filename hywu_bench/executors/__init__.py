"""Executors: where the runs of a sweep (`compare`, `paper`) execute. The engines schedule; we do not.

    local           this process, or a pool of worker processes (`--workers N`)
    submitit-local  submitit's LocalExecutor on this machine: the SLURM code path, one process per run
    slurm           one SLURM job array per sweep through submitit (`map_array`); preempted or timed-out
                    runs are requeued by submitit's checkpoint hook and resume from their own checkpoint
    ray             one Ray task per run on a running cluster (`--address HOST:PORT`), with retries

Every run is an idempotent call that writes its own results folder (`base.run_one`), so any engine's
retry or requeue is safe, and a sweep run again does only what is missing. Nothing pickled lands in the
results folder: submitit's pickles and logs, and the tracebacks of failed runs, go to the jobs folder,
by default <out's parent>/.hywu-bench-jobs/<out's name>/, which may be deleted at any time.

References: submitit (https://github.com/facebookincubator/submitit), Ray tasks
(https://docs.ray.io/en/latest/ray-core/tasks.html).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from hywu_bench.errors import UserError
from hywu_bench.executors.base import (Executor, Listener, Outcome, SilentListener, default_jobs_folder,
                                       prepare_worker, run_one)
from hywu_bench.executors.local import LocalExecutor, ProcessExecutor

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "Listener", "LocalExecutor", "Outcome", "ProcessExecutor",
           "SilentListener", "default_jobs_folder", "make_executor", "prepare_worker", "run_one"]

EXECUTORS = ("local", "submitit-local", "slurm", "ray")
_SLURM_ONLY = ("partition", "mem", "array_parallelism", "sbatch_lines")
_SUBMITIT = ("time", "gpus_per_task", "cpus_per_task")
_RAY = ("address", "ray_num_gpus", "ray_num_cpus", "ray_retries", "shared_path")
_FLAG = {"workers": "--workers", "partition": "--slurm-partition", "time": "--slurm-time", "mem": "--slurm-mem",
         "gpus_per_task": "--gpus-per-task", "cpus_per_task": "--cpus-per-task",
         "array_parallelism": "--array-parallelism", "sbatch_lines": "--sbatch-line", "address": "--address",
         "ray_num_gpus": "--ray-num-gpus", "ray_num_cpus": "--ray-num-cpus", "ray_retries": "--ray-retries",
         "shared_path": "--shared-path"}
DEFAULT_TIME_MIN = 240  # per run; a run that outlives it is requeued and resumes from its checkpoint


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and how a sweep's runs execute. None means "not given": the executor's default applies."""

    kind: str = "local"  # one of EXECUTORS
    workers: int | None = None  # local: runs in parallel, each in its own process [1]
    jobs_folder: Path | None = None  # submitit's folder and failure logs [<out's parent>/.hywu-bench-jobs/<out's name>]
    # SLURM through submitit; submitit-local takes time, gpus_per_task and cpus_per_task and ignores the rest
    time: str | None = None  # time limit of one run: minutes, H:MM:SS or D-HH:MM:SS [4:00:00]
    partition: str | None = None  # sbatch --partition [the cluster's default]
    gpus_per_task: int | None = None  # sbatch --gpus-per-task [0]
    cpus_per_task: int | None = None  # sbatch --cpus-per-task, also the run's torch threads [1]
    mem: str | None = None  # sbatch --mem, e.g. 32G [the cluster's default]
    array_parallelism: int | None = None  # runs of the array at once (sbatch --array=0-N%P) [all]
    sbatch_lines: tuple[str, ...] = ()  # extra sbatch options, e.g. "--account=mylab", "--qos=high"
    # Ray
    address: str | None = None  # HOST:PORT of the cluster's head (its GCS port, 6379 by default)
    ray_num_gpus: float | None = None  # GPUs per run [0]
    ray_num_cpus: float | None = None  # CPUs per run, also the run's torch threads [1]
    ray_retries: int | None = None  # retries of a task whose worker died [3]
    shared_path: bool | None = None  # tasks write into --out (a path every node sees) [no: returned to the driver]

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor '{self.kind}'; use one of: {', '.join(EXECUTORS)}.")
        given = {f.name for f in fields(self) if f.name not in ("kind", "jobs_folder")
                 and getattr(self, f.name) not in (None, ())}
        allowed = {"local": {"workers"}, "submitit-local": {*_SUBMITIT, *_SLURM_ONLY},
                   "slurm": {*_SUBMITIT, *_SLURM_ONLY}, "ray": set(_RAY)}[self.kind]
        wrong = sorted(given - allowed, key=list(_FLAG).index)
        if wrong:
            owner = "ray" if wrong[0] in _RAY else "local" if wrong[0] == "workers" else "slurm or submitit-local"
            raise UserError(f"{_FLAG[wrong[0]]} is an option of --executor {owner}, not of --executor {self.kind}.")
        for name in ("workers", "gpus_per_task", "cpus_per_task", "array_parallelism", "ray_retries",
                     "ray_num_gpus", "ray_num_cpus"):
            value = getattr(self, name)
            least = 1 if name in ("workers", "cpus_per_task", "array_parallelism") else 0
            if value is not None and value < least:
                raise UserError(f"{_FLAG[name]} must be >= {least} (got {value}).")
        if self.kind == "ray" and not self.address:
            raise UserError("--executor ray needs --address HOST:PORT of the cluster's head (`ray start --head` "
                            "prints it).")
        self.time_minutes  # a bad time is an error now, not after the grid was built

    @property
    def time_minutes(self) -> int:
        return parse_minutes(self.time) if self.time else DEFAULT_TIME_MIN


def parse_minutes(text: str) -> int:
    """SLURM's time formats: 'M', 'H:MM:SS', 'D-HH:MM:SS' (also 'MM:SS' and 'D-HH') -> whole minutes (>= 1)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"--slurm-time '{text}' is not a time; use minutes (90), H:MM:SS (4:00:00) or "
                        f"D-HH:MM:SS (1-00:00:00).")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:
        seconds = a * 60
    if seconds < 60:
        raise UserError(f"--slurm-time '{text}' is under a minute.")
    return -(-seconds // 60)


def make_executor(options: ExecutorOptions | int | None = None, plugins: Sequence[str | Path] = ()) -> Executor:
    """The executor for `options` (an int is a number of local workers), checked before anything runs:
    an unknown executor, `slurm` without sbatch, an unreachable Ray address fail here."""
    if options is None or isinstance(options, int):
        options = ExecutorOptions(workers=options if isinstance(options, int) else None)
    plugins = [str(Path(p).resolve()) for p in plugins]  # jobs and tasks run elsewhere
    if options.kind == "local":
        workers = options.workers or 1
        return (LocalExecutor(options.jobs_folder) if workers == 1
                else ProcessExecutor(workers, plugins, jobs_folder=options.jobs_folder))
    if options.kind in ("submitit-local", "slurm"):
        from hywu_bench.executors.slurm import SubmititExecutor

        return SubmititExecutor(options, plugins)
    from hywu_bench.executors.ray_cluster import RayExecutor

    return RayExecutor(options, plugins)
