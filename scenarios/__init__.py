"""Shipped scenarios, registered on import by `scenarios/catalog.py` (light: names, options, builder
references); their builders' modules are imported only when a run starts."""

from scenarios import catalog  # noqa: F401
