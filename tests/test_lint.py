"""The code base stays lint-clean: `ruff check .` (configured in pyproject.toml) passes on the whole repository."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:  # part of the test extra: a missing linter is a failure, not a skip
        pytest.fail('ruff is not installed; it is part of the test extra: pip install -e ".[test]"')
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"`ruff check .` in {ROOT} failed:\n{out.stdout}{out.stderr}"
