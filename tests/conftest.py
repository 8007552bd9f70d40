"""Shared fixtures. Tests are imported with --import-mode=importlib (avalanche installs a top-level
`tests` package into site-packages, so never import this folder as `tests.*`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    """No test reads or writes the user's real data cache unless it sets HYWU_BENCH_DATA itself."""
    monkeypatch.setenv("HYWU_BENCH_DATA", str(tmp_path / "data"))
