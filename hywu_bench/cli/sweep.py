"""The sweep commands: `compare` (a grid of runs), `report` (tables and figures from stored runs, no torch)
and `paper` (a declared suite).

Thin: parsing, progress display and messages here; the grid lives in `hywu_bench.sweep`, the pages in
`hywu_bench.pages` (tables: `tables`, figures: `figures`), the suites in `hywu_bench.suites`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hywu_bench.cli.common import Loggers, Plugins, check_loggers, load_plugins, user_errors
from hywu_bench.cli.progress import GridProgress
from hywu_bench.errors import UserError

log = logging.getLogger(__name__)

# Where the runs execute (hywu_bench.executors): declared once, on compare and paper.
PANEL = "Where runs execute"
Executor = Annotated[Optional[str], typer.Option(
    rich_help_panel=PANEL, help="local, submitit-local, slurm or ray. [default: local, or the suite's]")]
ExecutorOpt = Annotated[Optional[list[str]], typer.Option(
    "--executor-opt", rich_help_panel=PANEL,
    help="KEY=VALUE for the executor (repeatable). "
         "slurm: partition, time (90, 4:00:00, 1-00:00:00), gpus_per_task, cpus_per_task, mem, array_parallelism, "
         "sbatch_lines (repeat to add), jobs_folder; "
         "submitit-local: time, gpus_per_task, cpus_per_task, jobs_folder; "
         "ray: address (HOST:PORT), num_gpus, num_cpus, retries, shared_path, jobs_folder.")]
ExecutorConfig = Annotated[Optional[Path], typer.Option(
    rich_help_panel=PANEL,
    help="A TOML file whose [executor] table holds kind and the executor's keys (flags override it).")]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")]
DataRoot = Annotated[Optional[Path], typer.Option(
    help="Dataset folder. [default: $HYWU_BENCH_DATA or ~/.cache/hywu-bench/data]")]
Overwrite = Annotated[bool, typer.Option(
    help="Replace stored runs whose configuration differs (identical ones are always reused).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]
Workers = Annotated[Optional[int], typer.Option(
    rich_help_panel=PANEL, help="local: runs in parallel, each in its own process. [default: 1, or the suite's]")]


def executor_options(kind: str | None, pairs: list[str] | None, workers: int | None, config: Path | None,
                     table: dict | None = None) -> Any:
    """ExecutorOptions from a table (a suite's, then --executor-config's), then the flags."""
    from hywu_bench.config import load_toml
    from hywu_bench.executors import ExecutorOptions

    merged = dict(table or {})
    if config is not None:
        section = load_toml(config).get("executor")
        if not isinstance(section, dict):
            raise UserError(f"executor config '{config}' has no [executor] table; write kind = \"slurm\" and the "
                            f"executor's keys under [executor].")
        merged.update(section)
    return ExecutorOptions.from_pairs(kind, pairs or [], workers, table=merged)


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


@user_errors
def compare_command(
    scenario: Annotated[str, typer.Option(help="Scenario name (see `hywu-bench list`).")],
    strategies: Annotated[str, typer.Option(
        help="Comma-separated strategy names, e.g. naive,replay,ewc,hywu; a strategy's variants in brackets, "
             "each run stored under its own name: replay\\[mem_size=100,500] (replay-mem_size100, replay-mem_size500), "
             "';' between keys for a cartesian product: replay\\[mem_size=100,500;buffer=class,experience].")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds or ranges, e.g. 0,1,2 or 0-4.")] = "0,1,2",
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per experience. [default: the scenario's]")] = None,
    device: Device = None,
    data_root: DataRoot = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set",
        help="KEY=VALUE for every run; STRATEGY.KEY=VALUE for one strategy (e.g. replay.mem_size=200); repeatable. "
             "memory_budget=1.4MiB sizes every rehearsal method's memory to those bytes; "
             "memory_budget=match:STRATEGY runs STRATEGY first and gives the others its stored bytes, "
             "seed by seed.")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    overwrite: Overwrite = False,
    plugin: Plugins = None,
    quiet: Quiet = False,
    executor: Executor = None, executor_opt: ExecutorOpt = None, executor_config: ExecutorConfig = None,
    workers: Workers = None,
    logger: Loggers = None,
) -> None:
    """Run every missing (strategy, seed) run of a grid, then write its tables and figures.

    Complete runs already on disk are reused, so an interrupted compare resumes where it stopped. Runs
    execute here (--executor local), on SLURM through submitit, or on a Ray cluster.

    Equal memory: --set memory_budget=match:hywu runs hywu first, then every other strategy with hywu's
    stored bytes of the same seed as its budget (docs/memory.md).
    """
    options = executor_options(executor, executor_opt, workers, executor_config)
    loggers = check_loggers(logger)
    if loggers and options.kind != "local":
        raise UserError(f"--logger works with --executor local only (the {options.kind} executor does not carry it "
                        f"to its jobs yet); run the grid locally, or without --logger.")
    from hywu_bench.executors import make_executor

    runner = make_executor(options, plugin or [])  # an unusable executor fails first, in seconds, before any run
    runner.loggers = loggers
    load_plugins(plugin)
    from hywu_bench import sweep
    from hywu_bench.variants import parse_all, split_top_level

    names, seed_list = split_top_level(strategies), parse_seeds(seeds)
    flags = {"epochs": epochs, "device": device, "data_root": str(data_root) if data_root else None}
    progress = GridProgress(len(parse_all(names)) * len(seed_list), quiet)
    try:
        result = sweep.compare(scenario, names, seed_list, out, sets=set_ or [], flags=flags, executor=runner,
                               listener=progress, overwrite=overwrite)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result, options.kind))


@user_errors
def report_command(
    results_dir: Annotated[Path, typer.Argument(help="A results folder (as written by run/compare/paper).")],
    scenario: Annotated[Optional[list[str]], typer.Option(
        help="Only this scenario (repeatable). [default: all]")] = None,
) -> None:
    """Re-render every table and figure (and REPORT.md) from stored runs; no training, no torch."""
    from hywu_bench.pages import render

    if not results_dir.is_dir():
        raise UserError(f"results folder '{results_dir}' does not exist.")
    rendered = render(results_dir, scenario or None)
    if not rendered.scenarios:
        raise UserError(f"no complete runs under '{results_dir}'"
                        + (f" for scenario {', '.join(scenario)}" if scenario else "") + ".")
    _print_rendered(rendered)


@user_errors
def paper_command(
    scale: Annotated[str, typer.Option(help="smoke (2 CPU cores, about 15 minutes) or full (a GPU).")] = "smoke",
    out: Annotated[Optional[Path], typer.Option(help="Results folder. [default: results/paper-SCALE]")] = None,
    suite: Annotated[Optional[Path], typer.Option(help="A suite TOML instead of the shipped one.")] = None,
    device: Device = None,
    data_root: DataRoot = None,
    overwrite: Overwrite = False,
    plugin: Plugins = None,
    quiet: Quiet = False,
    executor: Executor = None, executor_opt: ExecutorOpt = None, executor_config: ExecutorConfig = None,
    workers: Workers = None,
) -> None:
    """Run a declared suite of comparisons and write every table, figure and REPORT.md.

    On SLURM (--executor slurm) the whole suite is one job array.
    """
    load_plugins(plugin)
    from hywu_bench import suites

    plan = suites.load_suite(suite, scale)
    options = executor_options(executor, executor_opt, workers, executor_config, plan.executor)
    for note in plan.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    out = out or Path("results") / f"paper-{scale}"
    progress = GridProgress(plan.n_runs, quiet)
    try:
        result = suites.run_suite(plan, out, device=device, data_root=str(data_root) if data_root else None,
                                  plugins=plugin or [], listener=progress,
                                  overwrite=overwrite, executor=options)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result, options.kind))
