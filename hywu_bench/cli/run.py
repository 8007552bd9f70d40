"""`hywu-bench run` (one strategy on one scenario) and `hywu-bench list` (every scenario and strategy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hywu_bench.cli.common import Loggers, Plugins, check_loggers, load_plugins, user_errors
from hywu_bench.errors import UserError


@user_errors
def run_command(
    scenario: Annotated[Optional[str], typer.Option(
        help="Scenario name (see `hywu-bench list`). [default: split-digits]")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Strategy name (see `hywu-bench list`).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (>= 0). [default: 0]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per experience. [default: the scenario's]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate. [default: the scenario's]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Training minibatch size. [default: the scenario's]")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="mlp, cnn, resnet18 or auto. [default: auto]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:K. [default: auto]")] = None,
    warm_start: Annotated[Optional[bool], typer.Option(
        "--warm-start/--no-warm-start", help="Share a backbone trained on experience 0. [default: on]")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        help="Dataset folder. [default: $HYWU_BENCH_DATA or ~/.cache/hywu-bench/data]")] = None,
    download: Annotated[bool, typer.Option(
        help="Download missing datasets with torchvision (needs a network).")] = False,
    name: Annotated[Optional[str], typer.Option(help="Run folder name. [default: the strategy name]")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="KEY=VALUE: a spec field, or a scenario/strategy option (scenario.KEY, strategy.KEY); "
                      "repeatable.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="A TOML file with spec fields and [scenario_options]/[strategy_options].")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Replace a complete run with the same name.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted run from its last finished experience.")] = False,
    scenario_file: Annotated[Optional[Path], typer.Option(
        help="A TOML task sequence (see scenarios/examples); same as --scenario sequence "
             "--set scenario.path=FILE.")] = None,
    plugin: Plugins = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; just the final table.")] = False,
    logger: Loggers = None,
) -> None:
    """Train one strategy on one scenario, experience by experience, and write its results."""
    loggers = check_loggers(logger)
    load_plugins(plugin)
    from hywu_bench.config import resolve_spec

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
    from hywu_bench.cli.progress import make_reporter
    from hywu_bench.runner import run  # torch and Avalanche: only once the request is known to be valid

    record = run(spec, out, overwrite=overwrite, resume=resume, reporter=make_reporter(quiet), loggers=loggers)
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


@user_errors
def list_command(plugin: Plugins = None) -> None:
    """Every scenario and strategy: what it is, its settings and its options with defaults."""
    load_plugins(plugin)
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
            budget = entry.budget
            if budget is not None:
                per = "per experience" if budget.per == "experience" else "in all"
                typer.echo(f"      a memory budget sizes: {budget.option} (items {per})")
            for note in entry.notes:
                typer.echo(f"      {note}")
        typer.echo("")
