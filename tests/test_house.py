"""House rules of the code itself, read from the sources (no run needed).

- One door to DuckDB: only midoffice/duck.py calls duckdb.connect, so every connection has its
  memory limit, threads, spill directory and file access set (ARCHITECTURE.md, properties 7, 9).
- The package's modules import each other without a cycle (config and duck once did).
- Publication never imports the build: the dependency goes build -> publish only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "midoffice"
THE_DOOR = PACKAGE / "duck.py"
# bench/run.py's yardstick runs plain DuckDB on purpose, in a child script (a string, not code here)
CHECKED_FOLDERS = [PACKAGE, REPO / "dags", REPO / "bench"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def duckdb_connect_calls(tree: ast.AST) -> list[int]:
    """Lines that open a DuckDB connection themselves: duckdb.connect (under any alias of the
    module) or connect imported from duckdb."""
    aliases, direct = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "duckdb"}
        elif isinstance(node, ast.ImportFrom) and node.module == "duckdb":
            direct |= {a.asname or a.name for a in node.names if a.name == "connect"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Name) \
                and f.value.id in aliases:
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id in direct:
            lines.append(node.lineno)
    return lines


def package_imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that this file imports (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known} or ({node.module} & known)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & known
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sources(PACKAGE)}
    return {name: package_imports(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a -> b -> ... -> a), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_only_duck_py_opens_duckdb_connections():
    offenders = [f"{p.relative_to(REPO)}:{line}" for p in sources(*CHECKED_FOLDERS) if p != THE_DOOR
                 for line in duckdb_connect_calls(ast.parse(p.read_text()))]
    assert not offenders, f"open DuckDB through midoffice.duck (connect, connect_scratch), not directly: {offenders}"


@pytest.mark.parametrize("source, expected", [
    ("import duckdb\ncon = duckdb.connect('x')", [2]),
    ("import duckdb as d\n\ndef f():\n    return d.connect()", [4]),
    ("from duckdb import connect\nconnect()", [2]),
    ("from midoffice.duck import connect\nconnect(settings)", []),
], ids=["module", "alias", "imported", "the-door"])
def test_the_connect_check_sees_every_spelling(source, expected):
    assert duckdb_connect_calls(ast.parse(source)) == expected


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "midoffice.duck" in graph["midoffice.config"] or "midoffice.config" in graph["midoffice.duck"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_publication_does_not_import_the_build():
    graph = import_graph()
    assert "midoffice.duck" in graph["midoffice.publish"]  # the graph does see publish's imports
    assert "midoffice.warehouse" not in graph["midoffice.publish"]
