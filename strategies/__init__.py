"""Shipped strategies, registered (light: names, options, builder references) on import; each family's
heavy module (`strategy.py`) is imported only when a run builds it. The order here is the order of
`hywu-bench list` and of every table and figure."""

from strategies import baselines, lora, hnet, hywu  # noqa: F401
