"""``optim_wrapper.paramwise_cfg``: its rules as one table, and the check of a config against it.

The table ``RULES`` is what the multipliers mean: each entry names its key,
the parameters it applies to, the setting it multiplies and its precedence.
The planner (``build/param_groups.py``) applies it and the check below reads
its keys, so that adding a rule is one entry (plus its test). ``custom_keys``
(the longest matching key overrides what it sets) and ``bypass_duplicate``
are not multipliers of a parameter type and are handled by the planner itself.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from visdet.engine.optim.config.arguments import check_number, check_values, describe, is_number
from visdet.engine.optim.config.layer_decay import LAYER_DECAY_KEYS, parse_layer_decay
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.modules import NORM_TYPES, ModuleParameter
from visdet.utils.signatures import Keywords
from visdet.utils.suggestions import suggestion_text

LR, DECAY = "lr", "weight_decay"
#: Deformable convolutions, by class name: mmcv's need its compiled ops, which
#: visdet does not install, so they cannot be imported to test against.
DCN_CLASS_NAMES = frozenset({"DeformConv2d", "ModulatedDeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2dPack"})


def _is_norm(p: ModuleParameter) -> bool:
    """Held by a norm layer: mmengine's norm types, and RMSNorm, which mmengine predates."""
    return isinstance(p.module, NORM_TYPES)


def _in_dcn(p: ModuleParameter) -> bool:
    """Held by a direct child of a deformable convolution (its offset convolution)."""
    return type(p.parent).__name__ in DCN_CLASS_NAMES


def _is_dwconv(p: ModuleParameter) -> bool:
    return isinstance(p.module, nn.Conv2d) and p.module.in_channels == p.module.groups


@dataclass(frozen=True)
class ParamwiseRule:
    """One ``paramwise_cfg`` multiplier, as mmengine's DefaultOptimWrapperConstructor defines it.

    Attributes:
        key: Its ``paramwise_cfg`` key.
        setting: What it multiplies: ``LR`` or ``DECAY`` (decay rules act only when a weight decay is set).
        precedence: Among the rules of one setting that apply to a parameter and
            are set, the lowest wins (mmengine's order of ifs).
        applies_to: The parameters it applies to, in words.
        applies: Whether it applies to one parameter where the module walk meets it.
    """

    key: str
    setting: str
    precedence: int
    applies_to: str
    applies: Callable[[ModuleParameter], bool]


#: Every multiplier of ``paramwise_cfg``, in mmengine's documentation order.
RULES: tuple[ParamwiseRule, ...] = (
    ParamwiseRule("bias_lr_mult", LR, 1, "biases, except of norm layers and deformable convolutions' offsets",
                  lambda p: p.local == "bias" and not (_is_norm(p) or _in_dcn(p))),
    ParamwiseRule("bias_decay_mult", DECAY, 2, "biases, except of deformable convolutions' offsets",
                  lambda p: p.local == "bias" and not _in_dcn(p)),
    ParamwiseRule("norm_decay_mult", DECAY, 1, "weights and biases of norm layers", _is_norm),
    ParamwiseRule("dwconv_decay_mult", DECAY, 3, "parameters of depth-wise convolutions", _is_dwconv),
    ParamwiseRule("flat_decay_mult", DECAY, 4, "1-D parameters, except of deformable convolutions' offsets",
                  lambda p: p.param.ndim == 1 and not _in_dcn(p)),
    ParamwiseRule("dcn_offset_lr_mult", LR, 0, "weights and biases of deformable convolutions' offset convolutions",
                  lambda p: "conv_offset" in p.prefix and _in_dcn(p) and isinstance(p.module, nn.Conv2d)),
)
#: Per setting, its rules in order of precedence.
RULES_BY_SETTING: dict[str, tuple[ParamwiseRule, ...]] = {
    setting: tuple(sorted((r for r in RULES if r.setting == setting), key=lambda r: r.precedence))
    for setting in (LR, DECAY)
}

PARAMWISE_MULTS = tuple(rule.key for rule in RULES)
PARAMWISE_KEYS = ("custom_keys", *PARAMWISE_MULTS, "bypass_duplicate", *LAYER_DECAY_KEYS)
DECAY_MULTS = tuple(rule.key for rule in RULES if rule.setting == DECAY)
CUSTOM_KEY_MULTS = ("lr_mult", "decay_mult")


def check_paramwise_cfg(
    paramwise_cfg: Any,
    group_keywords: Keywords,
    optimizer_cfg: Mapping[str, Any],
    key: str = "optim_wrapper.paramwise_cfg",
    optimizer_key: str = "optim_wrapper.optimizer",
    extra_keys: tuple[str, ...] = (),
) -> None:
    """Refuse misspelled keys, bad multipliers, and decay rules without a decay.

    Args:
        paramwise_cfg: The config's ``paramwise_cfg`` (None or a dict).
        group_keywords: What a parameter group may override (the optimizer's
            keywords); ``custom_keys`` entries may set these besides the mults.
        optimizer_cfg: The optimizer config (``weight_decay`` is looked up).
        key: Config path of ``paramwise_cfg``.
        optimizer_key: Config path of ``optimizer_cfg``.
        extra_keys: Top-level keys a constructor subclass declared
            (``extra_paramwise_keys``); accepted unchecked, for it to read.

    A ``custom_keys`` entry may hold ``optimizer=dict(type=...)`` (a
    per-module optimizer); the constructor checks that dict
    (``config.custom_optimizers``), and a route's keys against its own class.
    """
    if paramwise_cfg is None:
        return
    if not isinstance(paramwise_cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(norm_decay_mult=0.0), got {describe(paramwise_cfg)}", key)
    known = (*PARAMWISE_KEYS, *extra_keys)
    for name, value in paramwise_cfg.items():
        if name in extra_keys:
            continue
        if name not in PARAMWISE_KEYS:
            raise OptimizerConfigError(
                f"unknown key '{name}'{suggestion_text(name, known)}\nValid keys: {', '.join(known)}", key
            )
        if name in PARAMWISE_MULTS:
            check_number(value, name, f"{key}.{name}")
        elif name == "bypass_duplicate" and not isinstance(value, bool):
            raise OptimizerConfigError(f"bypass_duplicate must be True or False, got {describe(value)}", key)
    parse_layer_decay(paramwise_cfg, key)  # layer_decay and its type: config/layer_decay.py
    has_wd = optimizer_cfg.get("weight_decay") is not None
    decay_keys = [k for k in DECAY_MULTS if k in paramwise_cfg]
    custom_keys = paramwise_cfg.get("custom_keys", {})
    if not isinstance(custom_keys, Mapping):
        raise OptimizerConfigError(
            f"must be a dict of name -> dict(lr_mult=..., decay_mult=...), got {describe(custom_keys)}",
            f"{key}.custom_keys",
        )
    for pattern, rule in custom_keys.items():
        path = f"{key}.custom_keys[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise OptimizerConfigError(
                f"keys must be non-empty parts of parameter names, got {pattern!r}", f"{key}.custom_keys"
            )
        if not isinstance(rule, Mapping):
            raise OptimizerConfigError(f"must be a dict like dict(lr_mult=0.1), got {describe(rule)}", path)
        if "optimizer" in rule:
            continue  # a per-module optimizer: checked against its own class by the constructor
        valid = (*CUSTOM_KEY_MULTS, *group_keywords.names, "optimizer")
        for name, value in rule.items():
            if name in CUSTOM_KEY_MULTS:
                check_number(value, name, f"{path}.{name}")
            elif name not in group_keywords.names:
                raise OptimizerConfigError(
                    f"unknown key '{name}'{suggestion_text(name, valid)}\nValid keys: {', '.join(valid)}", path
                )
        if "decay_mult" in rule:
            decay_keys.append(f"custom_keys[{pattern!r}].decay_mult")
        other = {k: v for k, v in rule.items() if k not in CUSTOM_KEY_MULTS}
        if other:
            check_values(other, group_keywords, "", path)
    if decay_keys and not has_wd:
        default = group_keywords.defaults.get("weight_decay")
        default_text = f" (its default is {default})" if is_number(default) else ""
        raise OptimizerConfigError(
            f"{', '.join(decay_keys)} multiplies the weight decay, but {optimizer_key} "
            f"sets no weight_decay{default_text}; set optimizer weight_decay explicitly or drop the decay multiplier",
            key,
        )

