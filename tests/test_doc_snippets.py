"""Every ```python block of README.md and docs/*.md, run as written.

What is checked, per block (parametrised by ``file:line`` so a failure names it):

* a **config fragment** (only assignments of literals and ``dict(...)`` calls,
  such as ``optim_wrapper = dict(...)`` or a bare ``optimizer=dict(...)``) is
  executed one statement at a time (alternatives on consecutive lines each
  count) and put into the small shipped detector config
  (``configs/faster_rcnn_r18_small.py``): ``optimizer`` replaces
  ``optim_wrapper.optimizer``, any other name replaces that top-level key.
  The result must pass visdet's whole pre-flight check
  (``visdet.engine.preflight.check_config``), with a process group assumed
  as for a ``--launcher pytorch`` run, so a snippet with a misspelt key, an
  optimizer that does not exist or a wrong value fails here;
* any other block is run in a fresh interpreter from the repository root with
  a timeout, and must exit 0 without writing to stderr a traceback;
* a block marked ```python-notest (it needs a GPU, several processes or a
  whole training) must still compile, and such blocks must stay few.
"""
from __future__ import annotations

import ast
import copy
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BASE_CONFIG = ROOT / "configs" / "faster_rcnn_r18_small.py"
MAX_NOTEST = 6  # blocks that cannot run; each one is a claim no test checks
TIMEOUT_S = 120


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence
    info: str  # 'python' or 'python-notest'
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    """The fenced blocks whose info string is ``python`` or ``python-notest``."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if start is None and stripped.startswith("```"):
                start = (number, stripped[3:].strip())
            elif start is not None and stripped == "```":
                if start[1] in ("python", "python-notest"):
                    code = textwrap.dedent("\n".join(lines[start[0]:number - 1]))  # a fence inside a list item
                    found.append(Snippet(path, start[0], start[1], code))
                start = None
    return found


ALL = snippets()
RUNNABLE = [s for s in ALL if s.info == "python"]
NOTEST = [s for s in ALL if s.info == "python-notest"]


def _is_config_value(node: ast.AST) -> bool:
    """Literals, containers of them, and ``dict(...)`` calls: what a config file assigns."""
    if isinstance(node, ast.Constant):
        return node.value is not Ellipsis
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_config_value(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_config_value(k) for k in node.keys) and all(
            _is_config_value(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _is_config_value(node.operand)
    if isinstance(node, ast.BinOp):  # 2e-4 * 4
        return _is_config_value(node.left) and _is_config_value(node.right)
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
                and all(k.arg is not None and _is_config_value(k.value) for k in node.keywords))
    return False


def config_statements(code: str) -> list[ast.Assign] | None:
    """The assignments of a config fragment, or None when ``code`` is a program."""
    tree = ast.parse(code)
    if not tree.body or not all(
        isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
        and _is_config_value(s.value) for s in tree.body
    ):
        return None
    return list(tree.body)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base_config() -> dict:
    from mmengine.config import Config

    return Config.fromfile(str(BASE_CONFIG)).to_dict()


def _check_fragment(statements: list[ast.Assign], base: dict) -> None:
    from visdet.engine.optim.catalog.availability import assume_met
    from visdet.engine.optim.catalog.spec import Need
    from visdet.engine.preflight import check_config

    for statement in statements:
        name = statement.targets[0].id  # type: ignore[attr-defined]
        value = eval(compile(ast.Expression(statement.value), "<snippet>", "eval"), {"dict": dict})
        cfg = copy.deepcopy(base)
        if name == "optimizer":
            cfg["optim_wrapper"] = dict(optimizer=value)
        else:
            cfg[name] = value
        with assume_met(Need.DISTRIBUTED):
            check_config(cfg)


@pytest.mark.parametrize("snippet", RUNNABLE, ids=lambda s: s.name)
def test_python_snippet_runs_as_written(snippet: Snippet, base_config: dict):
    statements = config_statements(snippet.code)
    if statements is not None:
        _check_fragment(statements, base_config)
        return
    done = subprocess.run([sys.executable, "-c", snippet.code], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{snippet.name} failed:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize("snippet", NOTEST, ids=lambda s: s.name)
def test_notest_snippet_still_parses(snippet: Snippet):
    compile(snippet.code, snippet.name, "exec")


def test_the_docs_have_snippets_and_few_are_exempt():
    assert len(RUNNABLE) >= 10, [s.name for s in RUNNABLE]  # the parser would otherwise find nothing
    assert len(NOTEST) <= MAX_NOTEST, [s.name for s in NOTEST]


def test_fragments_are_told_from_programs_and_a_wrong_fragment_fails(base_config: dict):
    from visdet.errors import ConfigError

    assert config_statements("optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4))") is not None
    assert config_statements("import torch\nx = 1") is None
    assert config_statements("EXTRAS = dict(a=...)") is None  # a placeholder is no config
    with pytest.raises(ConfigError, match="learning_rate"):
        _check_fragment(config_statements("optimizer = dict(type='AdamW', learning_rate=1e-4)"), base_config)
