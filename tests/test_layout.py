"""The layout docs/architecture.md draws, checked on the source: arrows point one way, sizes stay readable.

Imports are read with ``ast``, so an import only made for type checking (under ``TYPE_CHECKING``)
counts like any other: a type-only cycle is still two modules that cannot be read apart.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNC = ROOT / "sync"

# Lowest first. A package may import from the layers below it and from itself, never from a layer
# above or from another package of its own layer (the source and the sink stand side by side).
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"rows"}),
    frozenset({"bigquery", "postgres"}),
    frozenset({"run"}),
    # What operators run, and the Fivetran webhook's HTTP entry: side by side at the top.
    frozenset({"ops", "webhook"}),
)
LAYER_OF = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
# Entry points at the top of sync/ may import anything.
TOP_LEVEL = {"sync", "sync.__main__"}

MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 150

TEST_FOLDERS = {"core", "rows", "bigquery", "postgres", "run", "ops", "webhook", "system"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SYNC.rglob("*.py"))}


def _imports(tree: ast.AST, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every sync module this tree imports (at any depth: function bodies, TYPE_CHECKING blocks)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sync":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: relative import; write the absolute sync.* path"
            if node.module is None or node.module.split(".")[0] != "sync":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                yield (child if child in modules else node.module), node.lineno


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in _imports(ast.parse(path.read_text(), str(path)), modules):
            if target != name and target in modules:
                edges.setdefault(target, line)
    return graph


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER_OF) else None


def test_every_module_sits_in_a_declared_package() -> None:
    stray = [name for name in _modules() if name not in TOP_LEVEL and _package(name) not in LAYER_OF]
    assert stray == [], f"put these in one of {sorted(LAYER_OF)} (and in docs/architecture.md): {stray}"


def test_imports_only_point_down_the_layers() -> None:
    wrong = []
    for source, targets in _graph().items():
        home = _package(source)
        if home is None:
            continue
        for target, line in targets.items():
            there = _package(target)
            if there is None or there == home:
                continue
            if LAYER_OF[there] >= LAYER_OF[home]:
                wrong.append(f"{source}:{line} imports {target} ({there} is not below {home})")
    assert wrong == []


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_not_even_type_only() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_type_only_cycle() -> None:
    # The check above must be able to fail: two modules that import each other, one of them
    # only under TYPE_CHECKING, as the state and runs modules once did.
    modules = {"sync.run.a": Path("a.py"), "sync.run.b": Path("b.py")}
    a = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sync.run.b import B\n")
    b = ast.parse("from sync.run.a import A\n")
    graph = {
        "sync.run.a": dict(_imports(a, modules)),
        "sync.run.b": dict(_imports(b, modules)),
    }
    assert _cycles(graph) == [["sync.run.a", "sync.run.b"]]


def _sized(path: Path) -> Iterator[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            assert node.end_lineno is not None
            yield kind, node.name, node.end_lineno - node.lineno + 1


def test_functions_and_classes_stay_readable() -> None:
    over = []
    for path in sorted(SYNC.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for kind, name, lines in _sized(path):
            limit = MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES
            if lines > limit:
                over.append(f"{rel}::{name} {kind} {lines} lines (limit {limit})")
    assert over == []


def test_test_files_mirror_the_packages() -> None:
    tests = ROOT / "tests"
    folders = {path.name for path in tests.iterdir() if path.is_dir() and any(path.glob("test_*.py"))}
    assert folders <= TEST_FOLDERS, f"test folders that match no package: {sorted(folders - TEST_FOLDERS)}"
    # Test folders have no __init__.py, so pytest imports each file by its bare name: two files
    # with one name in different folders would collide.
    names = [path.name for path in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert not any((tests / folder / "__init__.py").exists() for folder in folders)


@pytest.mark.parametrize("helper", ["conftest.py", "projection.py", "poison.py", "functionapp.py", "crash_runner.py"])
def test_shared_helpers_stay_at_the_tests_root(helper: str) -> None:
    # crash_runner.py is run as a script by path (tests/run/test_faults.py); the others are imported
    # by name through pytest's pythonpath ("tests").
    assert (ROOT / "tests" / helper).is_file()
