"""Shipped strategies. Each module registers its builders in `hywu_bench.registry.STRATEGIES` on import."""

from strategies import baselines  # noqa: F401
from strategies import lora, hnet  # noqa: F401
from strategies import hywu  # noqa: F401
