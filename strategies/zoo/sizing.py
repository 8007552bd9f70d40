"""What one buffered item costs where it is more than an input and its label (light: no torch)."""

from __future__ import annotations

from typing import Any

from hywu_bench.memory import raw_item_bytes


def with_logits(spec: Any, info: Any, options: Any) -> tuple[int, int]:
    """DER keeps each stored input's logits (float32, one per class) beside it."""
    return 0, raw_item_bytes(info) + 4 * info.n_classes
