"""Shipped strategies. Each module registers its builders in `hywu_bench.registry.STRATEGIES` on import."""

from strategies import baselines  # noqa: F401
