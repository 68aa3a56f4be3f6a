"""``build_optim_wrapper(model, cfg)``: mmengine's function, resolved in visdet's registries.

mmengine's ``build_optim_wrapper`` looks the constructor up in the current
default scope, which outside a visdet Runner is none (mmengine's own root), so
MMDetection-style code calling it gets mmengine's constructor and raw wrapper.
This one takes the same arguments and builds through visdet's
``OPTIM_WRAPPER_CONSTRUCTORS`` (a ``'mmengine.X'`` or another scope's name still
reaches that registry, as in mmengine).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from mmengine.registry import DefaultScope

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS, SCOPE

WRAPPER_KEY = "optim_wrapper"


def build_optim_wrapper(model: nn.Module, cfg: Mapping[str, Any]) -> Any:
    """Build the ``optim_wrapper`` section ``cfg`` for ``model``, as mmengine's function does.

    ``constructor`` (default ``'DefaultOptimWrapperConstructor'``, visdet's)
    and ``paramwise_cfg`` are popped from a copy of ``cfg`` and handed to the
    constructor. With no default scope set, or mmengine's, visdet's is used
    for the build; another project's scope is kept (its own constructor, if
    it registers one, is found as in mmengine).

    Raises:
        OptimizerConfigError: ``cfg`` is not a dict, or any mistake the
            constructor finds.
    """
    if not isinstance(cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(optimizer=dict(type='AdamW')), got {cfg!r}", WRAPPER_KEY)
    wrapper_cfg = copy.deepcopy(dict(cfg))
    constructor_type = wrapper_cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = wrapper_cfg.pop("paramwise_cfg", None)
    spec = dict(type=constructor_type, optim_wrapper_cfg=wrapper_cfg, paramwise_cfg=paramwise_cfg)
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name == "mmengine":  # mmengine's root would give mmengine's constructor
        with DefaultScope.overwrite_default_scope(SCOPE):
            return OPTIM_WRAPPER_CONSTRUCTORS.build(spec)(model)
    return OPTIM_WRAPPER_CONSTRUCTORS.build(spec)(model)
