"""The documented code examples run as written."""

import re
from pathlib import Path

from typer.testing import CliRunner

from hywu_bench.cli import app

EXTENDING = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def python_block_after(heading: str) -> str:
    text = EXTENDING.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_plugin_example_registers_and_runs(tmp_path):
    plugin = tmp_path / "my_stuff.py"
    plugin.write_text(python_block_after("# Your own scenarios and strategies"))
    result = CliRunner().invoke(app, ["run", "--plugin", str(plugin), "--scenario", "blobs", "--strategy", "plain-sgd",
                                      "--out", str(tmp_path / "results"), "-q"])
    assert result.exit_code == 0, result.output
    assert "plain-sgd on blobs" in result.output
    listed = CliRunner().invoke(app, ["list", "--plugin", str(plugin)])
    assert f"blobs [from {plugin}]" in listed.output
    assert f"plain-sgd [from {plugin}]" in listed.output
