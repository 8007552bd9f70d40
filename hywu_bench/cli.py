"""The `hywu-bench` command line: argument parsing, progress display and error messages; no science.

Heavy imports (torch, avalanche) happen inside the commands, so `--help` and `--version` are instant.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from hywu_bench import __version__
from hywu_bench.errors import RunDiverged, UserError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Continual-learning benchmarks for HY-WU against replay, EWC, LoRA and other baselines.")


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input ends in one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as err:
            fail(str(err))
        except RunDiverged as err:
            fail(f"the run diverged: {err}", code=1)
        except KeyboardInterrupt:
            fail("interrupted; the results folder keeps only complete runs.", code=130)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hywu-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Continual-learning benchmarks for HY-WU against replay, EWC, LoRA and other baselines."""


def _load_plugins(plugins: list[Path] | None) -> None:
    from hywu_bench.registry import load_builtins, load_entry_points, load_plugin_file

    load_builtins()
    load_entry_points()
    for plugin in plugins or []:
        load_plugin_file(plugin)


Plugins = Annotated[Optional[list[Path]], typer.Option("--plugin", help="A Python file that registers scenarios or strategies (repeatable).")]


@app.command("run")
@user_errors
def run_command(
    scenario: Annotated[Optional[str], typer.Option(help="Scenario name (see `hywu-bench list`). [default: split-digits]")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Strategy name (see `hywu-bench list`).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (>= 0). [default: 0]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per experience. [default: the scenario's]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate. [default: the scenario's]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training minibatch size. [default: the scenario's]")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="mlp, cnn, resnet18 or auto. [default: auto]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    warm_start: Annotated[Optional[bool], typer.Option("--warm-start/--no-warm-start", help="Share a backbone trained on experience 0. [default: on]")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Dataset folder. [default: $HYWU_BENCH_DATA or ~/.cache/hywu-bench/data]")] = None,
    download: Annotated[bool, typer.Option(help="Download missing datasets with torchvision (needs a network).")] = False,
    name: Annotated[Optional[str], typer.Option(help="Run folder name. [default: the strategy name]")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: a spec field, or a scenario/strategy option (scenario.KEY, strategy.KEY); repeatable.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A TOML file with spec fields and [scenario_options]/[strategy_options].")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Replace a complete run with the same name.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last finished experience.")] = False,
    scenario_file: Annotated[Optional[Path], typer.Option(help="A TOML task sequence (see scenarios/examples); same as --scenario sequence --set scenario.path=FILE.")] = None,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; just the final table.")] = False,
) -> None:
    """Train one strategy on one scenario, experience by experience, and write its results."""
    _load_plugins(plugin)
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import run

    if scenario_file is not None:
        if scenario is not None:
            raise UserError("give either --scenario or --scenario-file, not both.")
        if not scenario_file.is_file():
            raise UserError(f"scenario file '{scenario_file}' does not exist.")
        scenario = "sequence"
        set_ = [f"scenario.path={json.dumps(str(scenario_file.resolve()))}", *(set_ or [])]
    flags = dict(scenario=scenario, strategy=strategy, seed=seed, epochs=epochs, lr=lr, batch_size=batch_size,
                 backbone=backbone, device=device, warm_start=warm_start, download=download or None,
                 data_root=str(data_root) if data_root else None, name=name)
    spec = resolve_spec(config_file=config, flags=flags, sets=set_)
    from hywu_bench.progress import make_reporter

    record = run(spec, out, overwrite=overwrite, resume=resume, reporter=make_reporter(quiet))
    _print_summary(record)


def _print_summary(record: Any) -> None:
    m = record.metrics

    def fmt(v: Any, pct: bool = True) -> str:
        if v is None or v != v:
            return "n/a"
        text = f"{v:.3f}"
        return "0.000" if text == "-0.000" else text

    rows = [("final average accuracy (ACC)", fmt(m["acc"])), ("learning accuracy", fmt(m["learning_acc"])),
            ("forgetting (max-based)", fmt(m["forgetting"])), ("backward transfer (BWT)", fmt(m["bwt"])),
            ("forward transfer (FWT)", fmt(m["fwt"])), ("wall time", f"{m['wall_seconds']:.1f} s"),
            ("trainable parameters", f"{m['trainable_parameters']:,}"),
            ("stored memory", f"{m['stored_memory_bytes']:,} bytes")]
    width = max(len(k) for k, _ in rows)
    title = f"{record.spec.run_name} on {record.spec.scenario_label}, seed {record.spec.seed}"
    typer.echo(title + ("  (already complete; reused)" if record.reused else ""))
    for key, value in rows:
        typer.echo(f"  {key:<{width}}  {value}")
    typer.echo(f"results: {record.path}")


@app.command("list")
@user_errors
def list_command(plugin: Plugins = None) -> None:
    """Every scenario and strategy: what it is, its settings and its options with defaults."""
    _load_plugins(plugin)
    from hywu_bench.registry import SCENARIOS, STRATEGIES

    for title, registry in (("Scenarios", SCENARIOS), ("Strategies", STRATEGIES)):
        typer.secho(title, bold=True)
        for entry in registry.entries():
            aliases = f" (alias {', '.join(entry.aliases)})" if entry.aliases else ""
            source = "" if entry.source == "hywu-bench" else f" [from {entry.source}]"
            typer.echo(f"  {entry.name}{aliases}{source}: {entry.help}")
            typer.echo(f"      settings: {', '.join(s + '-incremental' for s in entry.settings)}")
            options = entry.option_defaults()
            if options:
                typer.echo("      options: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))
            for note in entry.notes:
                typer.echo(f"      {note}")
        typer.echo("")


def _hide_library_warnings() -> None:
    """Avalanche warns about its own internals (no loggers, deprecated calls) on every run, and its
    deprecation decorator resets the warning filters, so warnings raised from its files are dropped here."""
    show = warnings.showwarning

    def filtered(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if "avalanche" not in str(filename) and category is not FutureWarning:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = filtered


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _hide_library_warnings()
    app()


from hywu_bench import cli_results  # noqa: E402,F401  (compare, report, paper register on `app`)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
