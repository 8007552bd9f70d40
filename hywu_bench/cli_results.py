"""The `compare`, `report` and `paper` commands, registered on the `hywu-bench` app.

Thin: parsing, progress display and messages here; the grid lives in `hywu_bench.sweep`, tables in
`hywu_bench.report`, figures in `hywu_bench.plots`, the suites in `hywu_bench/suites/*.toml`.
`report` never imports torch (nor does this module at import time).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hywu_bench.cli import Plugins, _load_plugins, app, user_errors
from hywu_bench.errors import UserError

log = logging.getLogger(__name__)

# Where the runs execute (hywu_bench.executors); the same options on compare and paper.
PANEL = "Where runs execute (--executor)"
Executor = Annotated[str, typer.Option(rich_help_panel=PANEL, help="local, submitit-local, slurm or ray.")]
JobsFolder = Annotated[Optional[Path], typer.Option(rich_help_panel=PANEL, help="submitit's job folder and the logs of failed runs (never inside --out). [default: OUT/../.hywu-bench-jobs/OUT-NAME]")]
SlurmPartition = Annotated[Optional[str], typer.Option(rich_help_panel=PANEL, help="slurm: sbatch --partition.")]
SlurmTime = Annotated[Optional[str], typer.Option(rich_help_panel=PANEL, help="slurm, submitit-local: time limit of one run (90, 4:00:00, 1-00:00:00); a run past it is requeued and resumes. [default: 4:00:00]")]
GpusPerTask = Annotated[Optional[int], typer.Option(rich_help_panel=PANEL, help="slurm, submitit-local: GPUs per run.")]
CpusPerTask = Annotated[Optional[int], typer.Option(rich_help_panel=PANEL, help="slurm, submitit-local: CPUs per run (also its torch threads).")]
SlurmMem = Annotated[Optional[str], typer.Option(rich_help_panel=PANEL, help="slurm: sbatch --mem, e.g. 32G.")]
ArrayParallelism = Annotated[Optional[int], typer.Option(rich_help_panel=PANEL, help="slurm: runs of the job array at once.")]
SbatchLine = Annotated[Optional[list[str]], typer.Option(rich_help_panel=PANEL, help="slurm: an extra sbatch option, e.g. --account=mylab (repeatable).")]
Address = Annotated[Optional[str], typer.Option(rich_help_panel=PANEL, help="ray: HOST:PORT of the cluster's head.")]
RayNumGpus = Annotated[Optional[float], typer.Option(rich_help_panel=PANEL, help="ray: GPUs per run.")]
RayNumCpus = Annotated[Optional[float], typer.Option(rich_help_panel=PANEL, help="ray: CPUs per run (also its torch threads). [default: 1]")]
RayRetries = Annotated[Optional[int], typer.Option(rich_help_panel=PANEL, help="ray: retries of a run whose worker died. [default: 3]")]
SharedPath = Annotated[Optional[bool], typer.Option("--shared-path/--no-shared-path", rich_help_panel=PANEL, help="ray: --out is the same path on every node, tasks write there; otherwise tasks return their files and this process writes them. [default: no]")]


def executor_options(kind: str, workers: Optional[int], jobs_folder: Optional[Path], partition: Optional[str],
                     time: Optional[str], gpus_per_task: Optional[int], cpus_per_task: Optional[int],
                     mem: Optional[str], array_parallelism: Optional[int], sbatch_line: Optional[list[str]],
                     address: Optional[str], ray_num_gpus: Optional[float], ray_num_cpus: Optional[float],
                     ray_retries: Optional[int], shared_path: Optional[bool]) -> Any:
    from hywu_bench.executors import ExecutorOptions

    return ExecutorOptions(kind=kind, workers=workers, jobs_folder=jobs_folder, time=time, partition=partition,
                           gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, mem=mem,
                           array_parallelism=array_parallelism, sbatch_lines=tuple(sbatch_line or ()),
                           address=address, ray_num_gpus=ray_num_gpus, ray_num_cpus=ray_num_cpus,
                           ray_retries=ray_retries, shared_path=shared_path)


def _csv(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"--{what} is empty; give a comma-separated list, e.g. --{what} " +
                        ("naive,replay,ewc" if what == "strategies" else "0,1,2"))
    return items


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0-2,7'."""
    seeds: list[int] = []
    for item in _csv(text, "seeds"):
        lo, dash, hi = item.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(item)]
        except ValueError:
            raise UserError(f"--seeds: '{item}' is not a seed or a range like 0-4.") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct and >= 0 (got {text}).")
    return seeds


class GridProgress:
    """Overall progress over runs: a rich bar on a terminal, one plain line per event otherwise."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task("runs", total=total)
            self.bar.start()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def started(self, spec: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"running {spec.run_name} seed {spec.seed} on {spec.scenario}")

    def finished(self, outcome: Any) -> None:
        self.done += 1
        spec = outcome.spec
        what = f"{spec.run_name} seed {spec.seed} on {spec.scenario}"
        if not outcome.ok:
            status = f"FAILED: {outcome.error}"
        elif outcome.reused:
            status = "skipped (already complete)"
        else:
            status = f"done in {outcome.seconds:.1f}s"
        self._line(f"[{self.done}/{self.total}] {what}: {status}")
        if self.bar is not None:
            self.bar.update(self.task, advance=1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summarise(result: Any, executor: str) -> int:
    """Print the sweep's summary, where things went and the failures; the exit code (1 when a run failed)."""
    outcomes = result.outcomes
    failures = [o for o in outcomes if not o.ok]
    done = sum(1 for o in outcomes if o.ok and not o.reused)
    skipped = sum(1 for o in outcomes if o.reused)
    typer.echo(f"{len(outcomes)} runs: {done} done, {skipped} skipped (already complete), {len(failures)} failed; "
               f"wall time {result.seconds:.1f} s (executor {executor}).")
    _print_rendered(result.report)
    if failures:
        typer.secho("failed runs (rerun the same command to retry only these):", fg=typer.colors.RED, err=True)
        for o in failures:
            where = f"  log: {o.log}" if o.log else ""
            typer.secho(f"  {o.spec.run_name} seed {o.spec.seed} on {o.spec.scenario}: {o.error}{where}", err=True)
    return 1 if failures else 0


def _print_rendered(rendered: Any) -> None:
    if rendered is None:
        return
    for scenario, files in rendered.scenarios.items():
        folder = rendered.out / scenario / "_report"
        typer.echo(f"{scenario}: {len(files)} tables and figures in {folder}")
    if rendered.index is not None:
        typer.echo(f"report: {rendered.index}")
    if rendered.skipped:
        typer.secho(f"skipped {len(rendered.skipped)} unfinished or unreadable run(s): "
                    + ", ".join(str(p) for p, _ in rendered.skipped), fg=typer.colors.YELLOW, err=True)


@app.command("compare")
@user_errors
def compare_command(
    scenario: Annotated[str, typer.Option(help="Scenario name (see `hywu-bench list`).")],
    strategies: Annotated[str, typer.Option(help="Comma-separated strategy names, e.g. naive,replay,ewc,hywu.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds or ranges, e.g. 0,1,2 or 0-4.")] = "0,1,2",
    workers: Annotated[Optional[int], typer.Option(help="local: runs in parallel, each in its own process. [default: 1]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per experience. [default: the scenario's]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE for every run; STRATEGY.KEY=VALUE for one strategy (e.g. replay.mem_size=200); repeatable.")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Replace stored runs whose configuration differs (identical ones are always reused).")] = False,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    executor: Executor = "local", jobs_folder: JobsFolder = None,
    slurm_partition: SlurmPartition = None, slurm_time: SlurmTime = None, gpus_per_task: GpusPerTask = None,
    cpus_per_task: CpusPerTask = None, slurm_mem: SlurmMem = None, array_parallelism: ArrayParallelism = None,
    sbatch_line: SbatchLine = None, address: Address = None, ray_num_gpus: RayNumGpus = None,
    ray_num_cpus: RayNumCpus = None, ray_retries: RayRetries = None, shared_path: SharedPath = None,
) -> None:
    """Run every missing (strategy, seed) run of a grid, then write its tables and figures.

    Complete runs already on disk are reused, so an interrupted compare resumes where it stopped. Runs
    execute here (--executor local), on SLURM through submitit, or on a Ray cluster.
    """
    options = executor_options(executor, workers, jobs_folder, slurm_partition, slurm_time, gpus_per_task,
                               cpus_per_task, slurm_mem, array_parallelism, sbatch_line, address, ray_num_gpus,
                               ray_num_cpus, ray_retries, shared_path)
    from hywu_bench.executors import make_executor

    runner = make_executor(options, plugin or [])  # an unusable executor fails first, in seconds, before any run
    _load_plugins(plugin)
    from hywu_bench import sweep

    names, seed_list = _csv(strategies, "strategies"), parse_seeds(seeds)
    flags = {"epochs": epochs, "device": device}
    progress = GridProgress(len(names) * len(seed_list), quiet)
    try:
        result = sweep.compare(scenario, names, seed_list, out, sets=set_ or [], flags=flags, executor=runner,
                               listener=progress, overwrite=overwrite)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result, executor))


@app.command("report")
@user_errors
def report_command(
    results_dir: Annotated[Path, typer.Argument(help="A results folder (as written by run/compare/paper).")],
    scenario: Annotated[Optional[list[str]], typer.Option(help="Only this scenario (repeatable). [default: all]")] = None,
) -> None:
    """Re-render every table and figure (and REPORT.md) from stored runs; no training, no torch."""
    from hywu_bench.paper import render

    if not results_dir.is_dir():
        raise UserError(f"results folder '{results_dir}' does not exist.")
    rendered = render(results_dir, scenario or None)
    if not rendered.scenarios:
        raise UserError(f"no complete runs under '{results_dir}'"
                        + (f" for scenario {', '.join(scenario)}" if scenario else "") + ".")
    _print_rendered(rendered)


@app.command("paper")
@user_errors
def paper_command(
    scale: Annotated[str, typer.Option(help="smoke (2 CPU cores, about 15 minutes) or full (a GPU).")] = "smoke",
    out: Annotated[Optional[Path], typer.Option(help="Results folder. [default: results/paper-SCALE]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local: runs in parallel. [default: the suite's]")] = None,
    suite: Annotated[Optional[Path], typer.Option(help="A suite TOML instead of the shipped one.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace stored runs whose configuration differs (identical ones are always reused).")] = False,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    executor: Executor = "local", jobs_folder: JobsFolder = None,
    slurm_partition: SlurmPartition = None, slurm_time: SlurmTime = None, gpus_per_task: GpusPerTask = None,
    cpus_per_task: CpusPerTask = None, slurm_mem: SlurmMem = None, array_parallelism: ArrayParallelism = None,
    sbatch_line: SbatchLine = None, address: Address = None, ray_num_gpus: RayNumGpus = None,
    ray_num_cpus: RayNumCpus = None, ray_retries: RayRetries = None, shared_path: SharedPath = None,
) -> None:
    """Run a declared suite of comparisons and write every table, figure and REPORT.md.

    On SLURM (--executor slurm) the whole suite is one job array.
    """
    options = executor_options(executor, workers, jobs_folder, slurm_partition, slurm_time, gpus_per_task,
                               cpus_per_task, slurm_mem, array_parallelism, sbatch_line, address, ray_num_gpus,
                               ray_num_cpus, ray_retries, shared_path)
    _load_plugins(plugin)
    from hywu_bench import paper

    plan = paper.load_suite(suite, scale)
    for note in plan.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    out = out or Path("results") / f"paper-{scale}"
    progress = GridProgress(plan.n_runs, quiet)
    try:
        result = paper.run_suite(plan, out, device=device, plugins=plugin or [], listener=progress,
                                 overwrite=overwrite, executor=options)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result, executor))
