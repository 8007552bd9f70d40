"""What every command shares: the one-line error, the error wrapper and the --plugin option.

Light: importing this (and any command module) imports neither torch nor Avalanche.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from hywu_bench.errors import RunDiverged, UserError


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


Loggers = Annotated[Optional[list[str]], typer.Option(
    "--logger", help="Avalanche's loggers on every run, under <run>/logs/: text, csv, tensorboard or wandb "
                     "(offline unless WANDB_MODE is set); repeatable. Not part of a run's identity.")]


def check_loggers(names: list[str] | None) -> tuple[str, ...]:
    from hywu_bench.loggers import check

    return check(names or [])


Plugins = Annotated[Optional[list[Path]], typer.Option(
    "--plugin", help="A Python file that registers scenarios or strategies (repeatable).")]


def load_plugins(plugins: list[Path] | None) -> None:
    """The registries as every hywu-bench process sees them (hywu_bench.process.setup_process)."""
    from hywu_bench.process import setup_process

    setup_process(plugins or [])
