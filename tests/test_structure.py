"""The house's structure: no import cycles, light front door, rooms that import only what they may."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hywu_bench", "strategies", "scenarios")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Every project module `path` imports, at module level or inside functions (lazy imports count:
    a cycle through a function is still a cycle in the design)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in imports(path, name):
            while imported and imported not in files:  # `from a.b import c` where c is a name in a.b
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):  # a package's own __init__
                targets.add(imported)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_project():
    graph = project_graph()
    assert "hywu_bench.runner" in graph and "strategies.hywu.strategy" in graph  # the walk found the modules
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_only_the_cli_imports_the_cli_and_the_core_names_no_concrete_strategy_or_scenario():
    graph = project_graph()
    for name, targets in graph.items():
        if not name.startswith(("hywu_bench.cli", "hywu_bench.__main__")):
            assert not any(t.startswith("hywu_bench.cli") for t in targets), name
        if name.startswith("hywu_bench"):
            assert not any(t.startswith(("strategies", "scenarios")) for t in targets), name
        if name.startswith("scenarios"):
            assert not any(t.startswith("strategies") for t in targets), name
        if name.startswith("strategies"):
            assert not any(t.startswith("scenarios") for t in targets), name


def test_list_validation_and_help_import_neither_torch_nor_avalanche(tmp_path):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom hywu_bench.cli import app\n"
            "for args in (['list'], ['run', '--scenario', 'nope'], ['run', '--set', 'beta=-1'], "
            "['compare', '--help'],\n"
            "             ['compare', '--scenario', 'split-digits', '--strategies', 'naive,nope']):\n"
            "    r = CliRunner().invoke(app, args)\n"
            "    assert r.exit_code in (0, 2), (args, r.output)\n"
            "print(sorted(m for m in ('torch', 'avalanche', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
