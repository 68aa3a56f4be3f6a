"""Resolve ``optim_wrapper.type`` to a wrapper class that can run here, or say in config words why not.

mmengine's registry answers an unknown or malformed name with a ``KeyError``,
``TypeError`` or ``RuntimeError`` of its own, builds a class that is no wrapper
(``type=int``) and fails inside it, and its ``ApexOptimWrapper`` asserts when
NVIDIA Apex is missing. Here each is an ``OptimizerConfigError`` (or
``OptimizerUnavailableError``) naming ``optim_wrapper.type``, with the close
names, before any model is looked at.
"""
from __future__ import annotations

from typing import Any

from visdet.registry import OPTIM_WRAPPERS

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)
from mmengine.optim import BaseOptimWrapper

from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.utils.suggestions import suggestion_text


def resolve_wrapper(wrapper_type: Any) -> type:
    """The optim wrapper class ``wrapper_type`` (a registered name or a class) names."""
    key = f"{WRAPPER_KEY}.type"
    if isinstance(wrapper_type, type):
        cls: Any = wrapper_type
    elif not isinstance(wrapper_type, str) or not wrapper_type:
        raise OptimizerConfigError(f"type must be a wrapper name like 'OptimWrapper', got {wrapper_type!r}", key)
    else:
        try:
            cls = OPTIM_WRAPPERS.get(wrapper_type)
        # ImportError: for 'scope.Name' mmengine imports '<scope>.registry'.
        except (ImportError, TypeError, ValueError, RuntimeError):
            cls = None
    if cls is None:
        parent = OPTIM_WRAPPERS.parent
        names = set(OPTIM_WRAPPERS.module_dict) | set(parent.module_dict if parent else {})
        raise OptimizerConfigError(
            f"unknown optim wrapper type '{wrapper_type}'{suggestion_text(wrapper_type, names)} "
            f"Known: {', '.join(sorted(names))}",
            key,
        )
    if not (isinstance(cls, type) and issubclass(cls, BaseOptimWrapper)):
        what = f"'{wrapper_type}' names {cls!r}, which is" if isinstance(wrapper_type, str) else f"{cls!r} is"
        raise OptimizerConfigError(
            f"{what} not an optim wrapper class; use e.g. type='OptimWrapper' or 'AmpOptimWrapper'", key
        )
    _check_wrapper_available(cls)
    return cls


def _check_wrapper_available(cls: type) -> None:
    """Refuse mmengine's ApexOptimWrapper without NVIDIA Apex (it would ``assert`` when built)."""
    from mmengine.optim.optimizer import apex_optimizer_wrapper as apex_module

    if issubclass(cls, apex_module.ApexOptimWrapper) and apex_module.apex_amp is None:
        raise OptimizerUnavailableError(
            f"'{cls.__name__}' cannot run here: NVIDIA Apex is not installed (https://github.com/NVIDIA/apex); "
            "use type='AmpOptimWrapper', torch's own mixed precision, which needs nothing extra",
            f"{WRAPPER_KEY}.type",
        )
