"""Shipped scenarios. Each module registers its builders in `hywu_bench.registry.SCENARIOS` on import."""

from scenarios import split  # noqa: F401
from scenarios import drift  # noqa: F401
from scenarios import personalization  # noqa: F401
from scenarios import sequence  # noqa: F401
