"""The `hywu-bench` Typer app: its commands (run.py: run, list; sweep.py: compare, report, paper) and main().

Thin commands that hand off to library functions; heavy imports (torch, Avalanche) happen only inside the
commands that train, after every argument has been validated, so `list`, `--help`, `--version` and every
validation error answer at once.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from hywu_bench import __version__
from hywu_bench.cli import run, sweep

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Continual-learning benchmarks for HY-WU against replay, EWC, LoRA and other baselines.")


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


app.command("run")(run.run_command)
app.command("list")(run.list_command)
app.command("compare")(sweep.compare_command)
app.command("report")(sweep.report_command)
app.command("paper")(sweep.paper_command)


def main() -> None:
    from hywu_bench.process import hide_library_warnings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    hide_library_warnings()
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
