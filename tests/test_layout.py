"""The package's shape: layers that import downwards only, no cycles, small modules and functions.

The layers, lowest first: argument checks; the dropout layers and the gradient
checker; the diagnosis and the replica of the original test (both use the
checker); the catalogue of layers to check (uses the diagnosis's codes); the
workbook tooling (runs, prints and draws everything else). A module may import
its own package's modules and any lower layer, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

LAYERS = {
    "lib._checks": 0,
    "lib.dropout": 1,
    "lib.gradcheck": 1,
    "lib.diagnose": 2,
    "lib.replica": 2,
    "lib.catalogue": 3,
    "lib.upstream": 3,
    "lib.workbook": 4,
    "lib.__main__": 5,
    "lib": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def layer(module: str) -> tuple[str, int]:
    """(the top-level part of lib it belongs to, that part's layer)."""
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def imported_lib_modules(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    """Every lib module an import statement names (a `from lib.x import y` of a submodule y counts as lib.x.y)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names if alias.name.split(".")[0] == "lib"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lib":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else node.module, node))
    return found


def graph() -> dict[str, set[str]]:
    return {name: {target for target, _ in imported_lib_modules(ast.parse(path.read_text()))}
            for name, path in MODULES.items()}


def test_every_package_is_in_the_explicit_packages_list():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages = sorted(module_name(p) for p in LIB.rglob("__init__.py"))
    assert sorted(listed) == packages


def test_no_function_imports_lib():
    # An import inside a function is how a cycle hides; the layers make it unnecessary.
    hidden = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                hidden += [f"{name}.{node.name} imports {target}" for target, _ in imported_lib_modules(node)]
    assert hidden == []


def test_imports_go_down_the_layers_only():
    upward = []
    for source, targets in graph().items():
        part, rank = layer(source)
        for target in targets:
            target_part, target_rank = layer(target)
            if target_part != part and target_rank >= rank:
                upward.append(f"{source} (layer {rank}) imports {target} (layer {target_rank})")
    assert upward == []


def test_the_import_graph_has_no_cycle():
    # Edges from a module to its own package's __init__ are implicit in Python and left out.
    edges = {source: {t for t in targets if not source.startswith(t + ".")} for source, targets in graph().items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, [*path, node])
        done.add(node)

    for module in sorted(edges):
        visit(module, [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"


def test_functions_are_small():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []
