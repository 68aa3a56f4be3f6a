"""Optimizer subsystem: registry filling, catalogue, listing, constructor, wrappers.

Names are exported lazily (PEP 562) so that ``visdet.registry`` can import a
submodule of this package without pulling in the rest.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OptimizerConfigError": "errors",
    "OptimizerUnavailableError": "errors",
    "NonFiniteTrainingError": "wrappers.nonfinite",
    "OptimizerSpec": "catalog.spec",
    "Need": "catalog.spec",
    "OptimizerInfo": "catalog.listing",
    "list_optimizers": "catalog.listing",
    "get_catalog": "catalog.catalogue",
    "OptimizerConfigWarning": "config.arguments",
    "OptimWrapperConstructor": "build.constructor",
    "HybridOptimizer": "hybrid.optimizer",
    "OptimWrapper": "wrappers.optim_wrapper",
    "AmpOptimWrapper": "wrappers.amp_wrapper",
    "plan_for": "build.report",
    "format_plan": "build.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
