"""MMDetection's ``LearningRateDecayOptimizerConstructor``, as visdet's constructor with layer decay.

MMDetection 3.x configs for ConvNeXt-style backbones say::

    optim_wrapper = dict(constructor='LearningRateDecayOptimizerConstructor',
                         paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6), ...)

MMDetection's class works out depths from ConvNeXt's module names only and
makes one group per parameter. Here its keys are translated to visdet's
``layer_decay`` rule (``config/layer_decay.py``), so the depths come from the
backbone's ``get_layer_depth`` (any backbone that has one), groups are
merged, and every other paramwise rule, the Muon hybrid and the checks apply.
As MMDetection's does, it also takes the weight decay off 1-D parameters and
biases (``flat_decay_mult=0``, ``bias_decay_mult=0`` unless the config sets them)
when a weight decay is configured.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.config.layer_decay import from_mmdet_keys


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)  # force: survives re-import
class LearningRateDecayOptimizerConstructor(OptimWrapperConstructor):
    """visdet's constructor reading MMDetection's ``decay_rate`` / ``decay_type`` / ``num_layers``.

    Args:
        optim_wrapper_cfg: As for :class:`OptimWrapperConstructor`.
        paramwise_cfg: MMDetection's keys (``decay_rate`` required), plus any of visdet's paramwise keys.
    """

    def __init__(self, optim_wrapper_cfg: Mapping[str, Any], paramwise_cfg: Mapping[str, Any] | None = None) -> None:
        cfg = dict(optim_wrapper_cfg) if isinstance(optim_wrapper_cfg, Mapping) else optim_wrapper_cfg
        if isinstance(cfg, dict) and "paramwise_cfg" in cfg and paramwise_cfg is None:
            paramwise_cfg = cfg.pop("paramwise_cfg")
        translated = from_mmdet_keys(paramwise_cfg)
        optimizer = cfg.get("optimizer") if isinstance(cfg, dict) else None
        if isinstance(optimizer, Mapping) and optimizer.get("weight_decay") is not None:
            translated.setdefault("flat_decay_mult", 0.0)
            translated.setdefault("bias_decay_mult", 0.0)
        super().__init__(cfg, translated)
