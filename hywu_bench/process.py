"""Setting up a process that runs hywu-bench: the command line, a worker process, a SLURM job, a Ray task.

One function, so that what a run sees (warning filters, the registries, the user's plugins) is the same
wherever it runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from hywu_bench.registry import load_entry_points, load_plugin_file

_DONE: dict[str, object] = {}


def setup_process(plugins: Sequence[str | Path] = ()) -> None:
    """Quiet library warnings once, then register the built-ins, installed entry points and `plugins`."""
    if "warnings" not in _DONE:
        hide_library_warnings()
        _DONE["warnings"] = True
    load_entry_points()
    for plugin in plugins:
        load_plugin_file(plugin)


def hide_library_warnings() -> None:
    """Avalanche warns about its own internals (no loggers, deprecated calls) on every run, and its
    deprecation decorator resets the warning filters, so warnings raised from its files are dropped here."""
    show = warnings.showwarning

    def filtered(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if "avalanche" not in str(filename) and category is not FutureWarning:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = filtered
