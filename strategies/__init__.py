"""Shipped strategies, registered (light: names, options, builder references) on import; each family's
heavy module (`strategy.py`) is imported only when a run builds it. The order here is the order of
`hywu-bench list` and of every table and figure."""

# Not sorted: the import order is the registration order.
# isort: off
from strategies import baselines, hywu, lora, hnet, zoo  # noqa: F401  (each registers on import, but zoo below)
# isort: on

zoo.register()  # after the harness's own: the Avalanche zoo closes the list
