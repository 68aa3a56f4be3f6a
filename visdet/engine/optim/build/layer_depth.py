"""The depth of each parameter, and layer-wise lr decay applied to the planned settings.

Depths come from the backbone's ``get_layer_depth(param_name, prefix)``
(mmpretrain's convention, which visdet's ResNet follows): ``(layer_id,
max_layer_id)``, the stem at 0, the neck and heads at ``max_layer_id - 1``.
The scale ``rate ** (max_layer_id - 1 - layer_id)`` is multiplied into each
parameter's lr here, at planning time, so the optimizer's groups start from
the decayed lrs and any scheduler (mmengine's scale each group from its own
initial lr) keeps their ratios; timm#2532 is what goes wrong when the scale is
left for a scheduler to apply.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from visdet.engine.optim.config.layer_decay import LayerDecay, parse_layer_decay
from visdet.engine.optim.errors import OptimizerConfigError

DepthFn = Callable[[str], tuple[int, int]]


def depth_function(model: nn.Module, decay: LayerDecay) -> DepthFn:
    """``name -> (layer_id, max_layer_id)`` for every parameter name of ``model``.

    The model's own ``get_layer_depth`` (a backbone trained alone) is used, or
    else its ``backbone``'s with the prefix ``'backbone.'`` (a detector).

    Raises:
        OptimizerConfigError: neither defines ``get_layer_depth``, or
            ``'stage_wise'`` is asked of one that takes no ``decay_type``.
    """
    model = getattr(model, "module", model)
    owner, prefix = (model, "") if callable(getattr(model, "get_layer_depth", None)) else (
        getattr(model, "backbone", None), "backbone.")
    method = getattr(owner, "get_layer_depth", None)
    if not callable(method):
        where = f"its backbone {type(owner).__name__}" if owner is not None else "it has no backbone and"
        raise OptimizerConfigError(
            f"layer decay needs the depth of each parameter, but {type(model).__name__}: {where} defines no "
            "get_layer_depth(param_name, prefix='') -> (layer_id, max_layer_id) (mmpretrain's convention; "
            "visdet's ResNet has it); use such a backbone or drop layer_decay", f"{decay.key}.layer_decay")
    try:
        takes_type = "decay_type" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes_type = False
    if takes_type:
        return lambda name: method(name, prefix=prefix, decay_type=decay.decay_type)
    if decay.decay_type != "layer_wise":
        raise OptimizerConfigError(
            f"{type(owner).__name__}.get_layer_depth takes no decay_type, so it gives layer-wise depths only; "
            "use layer_decay_type='layer_wise'", f"{decay.key}.layer_decay_type")
    return lambda name: method(name, prefix=prefix)


def layer_depths(model: nn.Module, names: list[str], decay: LayerDecay) -> dict[str, tuple[int, int]]:
    """The ``(layer_id, max_layer_id)`` of each name, checked against the config's ``num_layers``."""
    depth = depth_function(model, decay)
    depths = {name: tuple(depth(name)) for name in names}
    maxima = {m for _, m in depths.values()}
    if len(maxima) > 1:
        raise OptimizerConfigError(f"get_layer_depth gave different max_layer_id values {sorted(maxima)}; "
                                   "it must give one", f"{decay.key}.layer_decay")
    if decay.num_layers is not None and maxima:
        have = maxima.pop() - 2
        if have != decay.num_layers:
            raise OptimizerConfigError(
                f"is {decay.num_layers}, but {type(getattr(model, 'module', model)).__name__}'s backbone has "
                f"{have} {decay.decay_type.replace('_wise', '')}s between the stem and the heads; set "
                f"{have} (or leave it out to take the backbone's)", f"{decay.key}.layer_decay_num_layers")
    return depths  # type: ignore[return-value]


def apply_layer_decay(settings: list[Any], model: nn.Module, paramwise_cfg: Mapping[str, Any],
                      prefix: str = "") -> None:
    """Multiply each planned setting's lr by its layer's scale (``param_groups.ParamSetting``s, in place).

    The scale multiplies whatever the other rules gave (base lr x ``lr_mult``);
    an absolute ``lr`` in a ``custom_keys`` entry is taken as written.
    ``prefix``: ``model``'s name in a larger model, which the settings' names start with.
    """
    decay = parse_layer_decay(paramwise_cfg)
    if decay is None:
        return
    custom_keys: Mapping[str, Mapping[str, Any]] = paramwise_cfg.get("custom_keys", {})
    start = len(prefix) + 1 if prefix else 0
    depths = layer_depths(model, [s.name[start:] for s in settings], decay)
    for setting in settings:
        layer_id, max_layer_id = depths[setting.name[start:]]
        setting.layer_id = layer_id
        if setting.custom_key is not None and "lr" in custom_keys[setting.custom_key]:
            continue
        setting.layer_scale = decay.scale(layer_id, max_layer_id)
        if setting.layer_scale != 1.0:
            setting.lr = setting.lr * setting.layer_scale
            rule = f"layer_decay[{layer_id}]"
            setting.lr_rule = rule if setting.lr_rule == "base" else f"{setting.lr_rule} x {rule}"
