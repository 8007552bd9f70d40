"""The `hywu-bench` command line: `app.py` (the Typer app and main), `run.py` (run, list), `sweep.py`
(compare, report, paper), `common.py` (errors, shared options), `progress.py` (progress display)."""

from hywu_bench.cli.app import app, main

__all__ = ["app", "main"]
