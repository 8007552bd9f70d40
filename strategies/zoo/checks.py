"""Validation shared by the generated options (light: no torch, no Avalanche)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def check_options(options: Any, buffer: str | None) -> None:
    """The buffer holds at least one input; sizes, epochs and batch sizes are not negative. Anything else
    Avalanche checks itself when the strategy is built (and the builder turns its complaint into one line)."""
    if buffer is not None and getattr(options, buffer) is not None and getattr(options, buffer) <= 0:
        raise ValueError(f"{buffer} must be > 0 (got {getattr(options, buffer)})")
    for f in fields(options):
        value = getattr(options, f.name)
        if (isinstance(value, int) and not isinstance(value, bool) and value < 0
                and any(word in f.name for word in ("size", "epochs", "subsample", "steps", "patterns"))):
            raise ValueError(f"{f.name} must be >= 0 (got {value})")
