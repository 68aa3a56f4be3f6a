"""Optimizer subsystem: registry filling, catalogue, listing, constructor, wrappers.

Names are exported lazily (PEP 562) so that ``visdet.registry`` can import a
submodule of this package without pulling in the rest. The names MMDetection
users import from ``mmengine.optim`` are here too: ``OPTIMIZERS`` (the very
object of ``visdet.registry``, read on access, so no import cycle),
``DefaultOptimWrapperConstructor`` (visdet's constructor), ``OptimWrapper``,
``AmpOptimWrapper`` and ``build_optim_wrapper``.
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
    "DefaultOptimWrapperConstructor": "build.constructor:OptimWrapperConstructor",
    "build_optim_wrapper": "wrappers.builder",
    "OPTIMIZERS": "visdet.registry",
    "OPTIM_WRAPPERS": "visdet.registry",
    "OPTIM_WRAPPER_CONSTRUCTORS": "visdet.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    if module.startswith("visdet."):  # the registries: visdet.registry imports this package
        return getattr(importlib.import_module(module), attribute or name)
    return getattr(importlib.import_module(f".{module}", __name__), attribute or name)
