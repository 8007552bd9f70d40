"""`--executor slurm` and `--executor submitit-local`: one submitit job per run, one SLURM job array per sweep.

The job is `RunJob`, a `submitit.helpers.Checkpointable`: when SLURM preempts it or its time limit nears,
submitit calls `RunJob.checkpoint`, which requeues the same run with `resume=True`, so it continues from
the run's own per-experience checkpoint (`checkpoint.pt`, plain tensors) rather than from a pickle of the
model. submitit's pickles and logs live in <jobs folder>/submitit/<job id>/, never in the results folder.
`submitit-local` is the same code path with submitit's LocalExecutor: one process per run on this machine.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

from hywu_bench import results
from hywu_bench.config import RunSpec
from hywu_bench.errors import UserError
from hywu_bench.executors import ExecutorOptions
from hywu_bench.executors.base import Listener, Outcome, default_jobs_folder, prepare_worker, run_one, threads_per_run

try:
    import submitit
except ImportError:  # pragma: no cover  (a dependency; guarded for broken installs)
    submitit = None

log = logging.getLogger(__name__)
POLL_SECONDS = {"local": 0.5, "slurm": 15.0}  # submitit rate-limits its own sacct calls too


class RunJob(submitit.helpers.Checkpointable if submitit else object):  # type: ignore[misc]
    """One run as a submitit job: idempotent, and resumable after a requeue."""

    def __init__(self, out: str, overwrite: bool, plugins: Sequence[str], threads: int | None):
        self.out, self.overwrite, self.plugins, self.threads = out, overwrite, list(plugins), threads

    def __call__(self, spec: RunSpec, resume: bool = False) -> Outcome:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("hywu_bench").setLevel(logging.INFO)  # "resuming ... after experience k" in the job log
        prepare_worker(threads_per_run(self.threads), self.plugins)  # on the node: SLURM_CPUS_PER_TASK
        job_id = f"submitit:{submitit.JobEnvironment().job_id}"  # the same after a requeue
        outcome = run_one(spec, self.out, self.overwrite and not resume, resume=resume, job_id=job_id)
        if not outcome.ok:
            log.error("run failed: %s\n%s", outcome.error, outcome.details)
        return outcome

    def checkpoint(self, spec: RunSpec, resume: bool = False) -> Any:
        """Called by submitit on preemption or timeout: requeue this run, resuming if it got as far as
        writing its configuration (an attempt stopped before that starts over, with its own arguments)."""
        started = _started(spec, Path(self.out))
        log.warning("requeued; %s", "will resume from the run's checkpoint" if started else "will start over")
        return submitit.helpers.DelayedSubmission(self, spec, resume=resume or started)


def _started(spec: RunSpec, out: Path) -> bool:
    return results.verdict(spec, out, resume=True).kind == "resume"


def sbatch_options(lines: Sequence[str]) -> dict[str, Any]:
    """'--account=lab', 'account=lab', '#SBATCH --qos high', '--exclusive' -> submitit's additional_parameters."""
    options: dict[str, Any] = {}
    for line in lines:
        text = line.strip().removeprefix("#SBATCH").strip()
        if not text.startswith("--") and text.startswith("-"):
            raise UserError(f"executor option sbatch_lines='{line}': "
                            "give the long form, e.g. --account=mylab (not -A mylab).")
        key, sep, value = text.lstrip("-").partition("=")
        if not sep:
            key, _, value = key.partition(" ")
        key, value = key.strip(), value.strip()
        if not key or " " in key:
            raise UserError(f"executor option sbatch_lines='{line}' is not an sbatch option; "
                            "write it like --account=mylab.")
        options[key] = value if value else True
    return options


def submitit_parameters(options: ExecutorOptions, name: str) -> dict[str, Any]:
    """`update_parameters` keywords for submitit's AutoExecutor (slurm_* ones are ignored by the local one)."""
    params: dict[str, Any] = {"name": name, "timeout_min": options.time_minutes, "tasks_per_node": 1,
                              "nodes": 1}
    gpus = options.gpus_per_task or 0
    if options.kind == "submitit-local":
        params["gpus_per_node"] = gpus  # submitit sets CUDA_VISIBLE_DEVICES for the process
        return params
    if gpus:
        params["slurm_gpus_per_task"] = gpus
    optional = {"slurm_partition": options.partition, "cpus_per_task": options.cpus_per_task,
                "slurm_mem": options.mem, "slurm_array_parallelism": options.array_parallelism}
    params.update({k: v for k, v in optional.items() if v is not None})
    extra = sbatch_options(options.sbatch_lines)
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


class SubmititExecutor:
    """Submits a sweep's runs as one submitit array and reports them as they finish."""

    def __init__(self, options: ExecutorOptions, plugins: Sequence[str] = ()):
        if submitit is None:  # pragma: no cover
            raise UserError('the slurm executors need submitit: pip install submitit')
        sbatch_options(options.sbatch_lines)  # a malformed line is an error first
        self.cluster = "local" if options.kind == "submitit-local" else "slurm"
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None] if self.cluster == "slurm" else []
        if missing:
            raise UserError(f"--executor slurm: '{missing[0]}' is not on PATH; run this on a SLURM login node "
                            f"(or use --executor submitit-local to try the same path on this machine). "
                            f"Nothing was submitted.")
        if self.cluster == "local" and options.gpus_per_task:
            _check_local_gpus(options.gpus_per_task)
        self.options, self.plugins = options, list(plugins)
        self.threads = options.cpus_per_task

    def _executor(self, out: Path, name: str) -> Any:
        jobs = (self.options.jobs_folder or default_jobs_folder(out)) / "submitit" / "%j"
        executor = submitit.AutoExecutor(folder=jobs, cluster=self.cluster)
        executor.update_parameters(**submitit_parameters(self.options, name))
        return executor

    def submit(self, specs: Sequence[RunSpec], out: Path, overwrite: bool = False) -> list[Any]:
        """One array for every spec (a single sbatch call: all of it is submitted, or none)."""
        out = Path(out).resolve()  # jobs start elsewhere (a compute node, another working directory)
        labels = {spec.scenario_label for spec in specs}
        name = f"hywu-bench-{labels.pop()}" if len(labels) == 1 else "hywu-bench"
        executor = self._executor(out, name)
        job = RunJob(str(out), overwrite, self.plugins, self.threads)
        try:
            jobs = executor.map_array(job, list(specs))
        except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
            detail = getattr(err, "output", None) or err
            raise UserError(f"submitting the job array failed, nothing was submitted: {str(detail).strip()}") from None
        log.info("submitted %d runs as %s %s; logs in %s", len(jobs), self.cluster,
                 jobs[0].job_id.split("_")[0] if jobs else "-", executor.folder)
        return jobs

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        if not specs:
            return []
        jobs = self.submit(specs, out, overwrite)
        for spec in specs:
            listener.started(spec)  # submitted; the cluster decides when it starts
        by_job = {id(job): spec for job, spec in zip(jobs, specs)}
        outcomes = []
        try:
            for job in submitit.helpers.as_completed(jobs, poll_frequency=POLL_SECONDS[self.cluster]):
                outcome = _outcome(job, by_job[id(job)])
                listener.finished(outcome)
                outcomes.append(outcome)
        except BaseException:
            if self.cluster == "local":  # this machine's jobs end with the sweep; a cluster's keep running
                for job in jobs:
                    if not job.done():
                        job.cancel(check=False)
            else:
                log.warning("the job array keeps running on the cluster; cancel it with: scancel %s",
                            jobs[0].job_id.split("_")[0])
            raise
        return outcomes


def _outcome(job: Any, spec: RunSpec) -> Outcome:
    try:
        outcome = job.result()
    except Exception as err:  # the job died without a result: killed, out of memory, timed out too often
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        outcome = Outcome(spec, False, error=f"job {job.job_id} ended without a result ({job.state}): {first}")
    if not outcome.ok:
        outcome.log = job.paths.stderr
    return outcome


def _check_local_gpus(wanted: int) -> None:
    import torch

    have = torch.cuda.device_count()
    if have < wanted:
        raise UserError(f"executor option gpus_per_task={wanted}: this machine has {have} CUDA device(s); "
                        f"{'drop gpus_per_task' if not have else f'ask for at most {have}'}.")
