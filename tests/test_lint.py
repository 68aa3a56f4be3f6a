"""The layout's habits, checked by the test command: layers, no import circles, ruff, small modules.

import-linter holds the contracts in pyproject.toml (the optimizer package's
layers, helpers at the bottom, no circles among sibling modules); a search of
grimp's import graph (the graph import-linter itself builds) finds a circle
between any two modules of visdet, lazy imports inside functions included.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from testutils import REPO

BIN = Path(sys.executable).parent
#: The optimizer package's modules stay small enough to read in one sitting.
MAX_OPTIM_LINES = 400


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_no_two_modules_of_visdet_import_each_other_in_a_circle():
    assert _circles(grimp.build_graph("visdet")) == []


def test_the_circle_search_finds_a_circle():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert _circles(graph) == [["p.a", "p.b", "p.c"]]


def test_import_linter_contracts_are_kept():
    result = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_ruff_finds_nothing():
    result = subprocess.run([str(BIN / "ruff"), "check", "visdet", "tools", "benchmarks", "tests"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


OPTIM_MODULES = sorted((REPO / "visdet" / "engine" / "optim").rglob("*.py"))


@pytest.mark.parametrize("path", OPTIM_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_optimizer_module_is_small_and_says_its_job(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_OPTIM_LINES, f"{path.name}: split it by job"
    assert ast.get_docstring(ast.parse(text)), f"{path.name}: its docstring should state its one job"
