"""Executors: where the runs of a sweep (`compare`, `paper`) execute. The engines schedule; we do not.

    local           this process, or a pool of worker processes (`--workers N`)
    submitit-local  submitit's LocalExecutor on this machine: the SLURM code path, one process per run
    slurm           one SLURM job array per sweep through submitit (`map_array`); preempted or timed-out
                    runs are requeued by submitit's checkpoint hook and resume from their own checkpoint
    ray             one Ray task per run on a running cluster (`--executor-opt address=HOST:PORT`), with retries

Every run is an idempotent call that writes its own results folder (`base.run_one`), so any engine's
retry or requeue is safe, and a sweep run again does only what is missing. Nothing pickled lands in the
results folder: submitit's pickles and logs, and the tracebacks of failed runs, go to the jobs folder,
by default <out's parent>/.hywu-bench-jobs/<out's name>/, which may be deleted at any time.

References: submitit (https://github.com/facebookincubator/submitit), Ray tasks
(https://docs.ray.io/en/latest/ray-core/tasks.html).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from hywu_bench.errors import UserError
from hywu_bench.executors.base import (
    Executor,
    Listener,
    Outcome,
    SilentListener,
    default_jobs_folder,
    prepare_worker,
    run_one,
)
from hywu_bench.executors.local import LocalExecutor, ProcessExecutor

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "Listener", "LocalExecutor", "Outcome", "ProcessExecutor",
           "SilentListener", "accepted_keys", "default_jobs_folder", "make_executor", "prepare_worker", "run_one"]

EXECUTORS = ("local", "submitit-local", "slurm", "ray")
DEFAULT_TIME_MIN = 240  # per run; a run that outlives it is requeued and resumes from its checkpoint


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and how a sweep's runs execute: `--executor KIND --executor-opt KEY=VALUE ...`, or an
    `[executor]` table (`kind = "slurm"`, then the keys) in a TOML file or a suite. None means "not given":
    the executor's default applies. The comment after each key says which executors take it."""

    kind: str = "local"  # one of EXECUTORS
    workers: int | None = None  # local: runs in parallel, each in its own process [1]
    jobs_folder: Path | None = None  # all but local: submitit's folder and failure logs
    #                                  [<out's parent>/.hywu-bench-jobs/<out's name>]
    time: str | None = None  # slurm, submitit-local: time limit of one run: minutes, H:MM:SS or D-HH:MM:SS [4:00:00]
    partition: str | None = None  # slurm: sbatch --partition [the cluster's default]
    gpus_per_task: int | None = None  # slurm, submitit-local: GPUs per run [0]
    cpus_per_task: int | None = None  # slurm, submitit-local: CPUs per run, also its torch threads [1]
    mem: str | None = None  # slurm: sbatch --mem, e.g. 32G [the cluster's default]
    array_parallelism: int | None = None  # slurm: runs of the array at once (sbatch --array=0-N%P) [all]
    sbatch_lines: tuple[str, ...] = ()  # slurm: extra sbatch options, e.g. "--account=mylab" (repeat the key to add)
    address: str | None = None  # ray: HOST:PORT of the cluster's head (its GCS port, 6379 by default)
    num_gpus: float | None = None  # ray: GPUs per run [0]
    num_cpus: float | None = None  # ray: CPUs per run, also the run's torch threads [1]
    retries: int | None = None  # ray: retries of a task whose worker died [3]
    shared_path: bool | None = None  # ray: tasks write into --out (a path every node sees) [no: returned to the driver]

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor '{self.kind}'; use one of: {', '.join(EXECUTORS)}.")
        given = [f.name for f in fields(self) if f.name != "kind" and getattr(self, f.name) not in (None, ())]
        wrong = [key for key in given if key not in accepted_keys(self.kind)]
        if wrong:
            owners = [k for k in EXECUTORS if wrong[0] in accepted_keys(k)]
            raise UserError(f"executor option '{wrong[0]}' belongs to --executor {' or '.join(owners)}, not to "
                            f"--executor {self.kind} (it takes: {', '.join(accepted_keys(self.kind))}).")
        for name in ("workers", "gpus_per_task", "cpus_per_task", "array_parallelism", "retries", "num_gpus",
                     "num_cpus"):
            value = getattr(self, name)
            least = 1 if name in ("workers", "cpus_per_task", "array_parallelism") else 0
            if value is not None and value < least:
                raise UserError(f"executor option {name} must be >= {least} (got {value}).")
        if self.kind == "ray" and not self.address:
            raise UserError("--executor ray needs --executor-opt address=HOST:PORT of the cluster's head "
                            "(`ray start --head` prints it).")
        if self.time:
            parse_minutes(self.time)  # a bad time is an error now, not after the grid was built

    @property
    def time_minutes(self) -> int:
        return parse_minutes(self.time) if self.time else DEFAULT_TIME_MIN

    @classmethod
    def from_pairs(cls, kind: str | None, pairs: Sequence[str] = (), workers: int | None = None,
                   table: Mapping[str, Any] | None = None) -> "ExecutorOptions":
        """From a TOML `[executor]` table, then `--executor`, `--workers` and `--executor-opt KEY=VALUE`
        pairs (later wins; a tuple key given twice collects both), each checked against the field's type."""
        from hywu_bench.config import parse_set
        from hywu_bench.registry import coerce, did_you_mean

        values: dict[str, Any] = dict(table or {})
        kind = kind or values.pop("kind", "local")
        values.pop("kind", None)
        if workers is not None:
            values["workers"] = workers
        hints = typing.get_type_hints(cls)
        for key, value in parse_set(list(pairs)):
            if key not in hints or key == "kind":
                valid = accepted_keys(kind if kind in EXECUTORS else "local")
                raise UserError(f"unknown executor option '{key}'.{did_you_mean(key, valid)} --executor {kind} takes: "
                                f"{', '.join(valid) or 'none'}.")
            if typing.get_origin(hints[key]) is tuple:
                value = [*values.get(key, ()), *(value if isinstance(value, list) else [value])]
            values[key] = value
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise UserError(f"unknown executor option '{unknown[0]}'; "
                            f"valid: {', '.join(k for k in hints if k != 'kind')}.")
        typed = {k: coerce(v, hints[k], f"executor option {k}") for k, v in values.items()}
        if typed.get("jobs_folder") is not None:
            typed["jobs_folder"] = Path(typed["jobs_folder"])
        return cls(kind=kind, **typed)


_TAKES = {"local": ("workers",),
          "submitit-local": ("jobs_folder", "time", "gpus_per_task", "cpus_per_task", "partition", "mem",
                             "array_parallelism", "sbatch_lines"),
          "slurm": ("jobs_folder", "time", "partition", "gpus_per_task", "cpus_per_task", "mem", "array_parallelism",
                    "sbatch_lines"),
          "ray": ("jobs_folder", "address", "num_gpus", "num_cpus", "retries", "shared_path")}


def accepted_keys(kind: str) -> tuple[str, ...]:
    """The `--executor-opt` keys an executor takes (submitit-local accepts SLURM's and ignores the rest)."""
    return _TAKES[kind]


def parse_minutes(text: str) -> int:
    """SLURM's time formats: 'M', 'H:MM:SS', 'D-HH:MM:SS' (also 'MM:SS' and 'D-HH') -> whole minutes (>= 1)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"executor option time='{text}' is not a time; use minutes (90), H:MM:SS (4:00:00) or "
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
        raise UserError(f"executor option time='{text}' is under a minute.")
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
