"""The source scanner finds optimizer classes the way a real import would, on a synthetic package."""
from __future__ import annotations

import importlib
import inspect
import sys
import textwrap

import pytest
import torch

from visdet.engine.optim.catalog.scan import PackageScanner

FILES = {
    "__init__.py": """
        from .optim import *  # star imports are not followed: names come from __all__ below
        from .optim import Fancy, FancyAlias as Renamed, NotAnOptimizer, helper_module
        from .deep.more import Deep
        try:
            from .optional import Optional
        except ImportError:
            pass
        __all__ = ["Fancy", "Renamed", "NotAnOptimizer", "Deep", "Optional", "helper_module", "CONSTANT"]
        CONSTANT = 3
    """,
    "base.py": """
        import torch
        from torch import optim
        class ViaAttribute(optim.Optimizer):
            pass
        class Direct(torch.optim.Optimizer):
            pass
    """,
    "optim.py": """
        from torch.optim.optimizer import Optimizer as TorchOptimizer
        from . import helper_module
        from .base import ViaAttribute
        class Fancy(ViaAttribute):
            '''A fancy optimizer.

            More text.'''
        class FancyAlias(TorchOptimizer):
            pass
        class NotAnOptimizer(dict):
            pass
    """,
    "helper_module.py": "X = 1\n",
    "deep/__init__.py": "",
    "deep/more.py": """
        from ..base import Direct
        class Deep(Direct):
            pass
    """,
    "optional.py": """
        import torch.optim as topt
        class Optional(topt.AdamW):
            pass
    """,
}


@pytest.fixture
def fakepkg(tmp_path, monkeypatch):
    root = tmp_path / "fakepkg"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m == "fakepkg" or m.startswith("fakepkg.")]:
        del sys.modules[name]


def test_scan_agrees_with_a_real_import(fakepkg):
    scanner = PackageScanner("fakepkg", fakepkg)
    found = scanner.optimizer_classes("fakepkg")
    module = importlib.import_module("fakepkg")
    real = sorted(
        name for name in module.__all__
        if inspect.isclass(getattr(module, name)) and issubclass(getattr(module, name), torch.optim.Optimizer)
    )
    assert found == real == ["Deep", "Fancy", "Optional", "Renamed"]


def test_scan_reads_the_docstring_without_importing(fakepkg):
    scanner = PackageScanner("fakepkg", fakepkg)
    assert scanner.docstring("fakepkg", "Fancy") == "A fancy optimizer."
    assert "fakepkg" not in sys.modules


def test_unparseable_or_missing_modules_are_not_optimizers(fakepkg):
    (fakepkg / "optim.py").write_text("class Fancy(:\n")  # syntax error
    scanner = PackageScanner("fakepkg", fakepkg)
    assert scanner.optimizer_classes("fakepkg") == ["Deep", "Optional"]
    assert scanner.optimizer_classes("fakepkg.absent") == []
