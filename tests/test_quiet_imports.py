"""Importing any visdet package prints nothing, even where it pulls in bitsandbytes and DeepSpeed."""
from __future__ import annotations

import pytest

from testutils import run_python


@pytest.mark.parametrize("module", ["visdet", "visdet.models", "visdet.engine.hooks", "visdet.datasets",
                                    "visdet.evaluation", "visdet.engine.preflight"])
def test_import_prints_nothing(module):
    result = run_python(f"import {module}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", (result.stdout, result.stderr)
