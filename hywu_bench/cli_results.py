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
            status = "already complete (reused)"
        else:
            status = f"done in {outcome.seconds:.1f}s"
        self._line(f"[{self.done}/{self.total}] {what}: {status}")
        if self.bar is not None:
            self.bar.update(self.task, advance=1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summarise(outcomes: list[Any], rendered: Any) -> int:
    """Print where things went and the failures; the exit code (1 when a run failed)."""
    failures = [o for o in outcomes if not o.ok]
    new = sum(1 for o in outcomes if o.ok and not o.reused)
    reused = sum(1 for o in outcomes if o.reused)
    typer.echo(f"{len(outcomes)} runs: {new} new, {reused} reused, {len(failures)} failed.")
    _print_rendered(rendered)
    if failures:
        typer.secho("failed runs (rerun the same command to retry only these):", fg=typer.colors.RED, err=True)
        for o in failures:
            typer.secho(f"  {o.spec.run_name} seed {o.spec.seed} on {o.spec.scenario}: {o.error}", err=True)
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
    workers: Annotated[int, typer.Option(help="Runs in parallel, each in its own process.")] = 1,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per experience. [default: the scenario's]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE for every run; STRATEGY.KEY=VALUE for one strategy (e.g. replay.mem_size=200); repeatable.")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Replace stored runs whose configuration differs (identical ones are always reused).")] = False,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Run every missing (strategy, seed) run of a grid, then write its tables and figures.

    Complete runs already on disk are reused, so an interrupted compare resumes where it stopped.
    """
    _load_plugins(plugin)
    from hywu_bench import sweep

    names, seed_list = _csv(strategies, "strategies"), parse_seeds(seeds)
    flags = {"epochs": epochs, "device": device}
    progress = GridProgress(len(names) * len(seed_list), quiet)
    try:
        result = sweep.compare(scenario, names, seed_list, out, workers=workers, sets=set_ or [], flags=flags,
                               executor=sweep.make_executor(workers, plugin or []), listener=progress,
                               overwrite=overwrite)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result.outcomes, result.report))


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
    workers: Annotated[Optional[int], typer.Option(help="Runs in parallel. [default: the suite's]")] = None,
    suite: Annotated[Optional[Path], typer.Option(help="A suite TOML instead of the shipped one.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace stored runs whose configuration differs (identical ones are always reused).")] = False,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Run a declared suite of comparisons and write every table, figure and REPORT.md."""
    _load_plugins(plugin)
    from hywu_bench import paper

    plan = paper.load_suite(suite, scale)
    for note in plan.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    out = out or Path("results") / f"paper-{scale}"
    progress = GridProgress(plan.n_runs, quiet)
    try:
        result = paper.run_suite(plan, out, workers=workers, device=device, plugins=plugin or [], listener=progress,
                                  overwrite=overwrite)
    finally:
        progress.close()
    raise typer.Exit(code=_summarise(result.outcomes, result.report))
