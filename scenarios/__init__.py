"""Shipped scenarios. Each module registers its builders in `hywu_bench.registry.SCENARIOS` on import."""

from scenarios import split  # noqa: F401
