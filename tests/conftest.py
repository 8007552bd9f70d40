"""Shared fixtures. Tests are imported with --import-mode=importlib (avalanche installs a top-level
`tests` package into site-packages, so never import this folder as `tests.*`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    """No test reads or writes the user's real data cache unless it sets HYWU_BENCH_DATA itself."""
    monkeypatch.setenv("HYWU_BENCH_DATA", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread, and much faster when other processes share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
