"""Check ``optim_wrapper.paramwise_cfg``: its keys, its multipliers, and decay rules without a decay."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visdet.engine.optim.config.arguments import check_number, check_values, describe, is_number
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import Keywords
from visdet.utils.suggestions import suggestion_text

#: Every key of mmengine's DefaultOptimWrapperConstructor ``paramwise_cfg``.
PARAMWISE_MULTS = (
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "dwconv_decay_mult",
    "flat_decay_mult",
    "dcn_offset_lr_mult",
)
PARAMWISE_KEYS = ("custom_keys", *PARAMWISE_MULTS, "bypass_duplicate")
DECAY_MULTS = tuple(k for k in PARAMWISE_MULTS if "decay" in k)
CUSTOM_KEY_MULTS = ("lr_mult", "decay_mult")


def check_paramwise_cfg(
    paramwise_cfg: Any,
    group_keywords: Keywords,
    optimizer_cfg: Mapping[str, Any],
    key: str = "optim_wrapper.paramwise_cfg",
    optimizer_key: str = "optim_wrapper.optimizer",
) -> None:
    """Refuse misspelled keys, bad multipliers, and decay rules without a decay.

    Args:
        paramwise_cfg: The config's ``paramwise_cfg`` (None or a dict).
        group_keywords: What a parameter group may override (the optimizer's
            keywords); ``custom_keys`` entries may set these besides the mults.
        optimizer_cfg: The optimizer config (``weight_decay`` is looked up).
        key: Config path of ``paramwise_cfg``.
        optimizer_key: Config path of ``optimizer_cfg``.
    """
    if paramwise_cfg is None:
        return
    if not isinstance(paramwise_cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(norm_decay_mult=0.0), got {describe(paramwise_cfg)}", key)
    for name, value in paramwise_cfg.items():
        if name not in PARAMWISE_KEYS:
            raise OptimizerConfigError(
                f"unknown key '{name}'{suggestion_text(name, PARAMWISE_KEYS)}\nValid keys: {', '.join(PARAMWISE_KEYS)}",
                key,
            )
        if name in PARAMWISE_MULTS:
            check_number(value, name, f"{key}.{name}")
        elif name == "bypass_duplicate" and not isinstance(value, bool):
            raise OptimizerConfigError(f"bypass_duplicate must be True or False, got {describe(value)}", key)
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
        valid = (*CUSTOM_KEY_MULTS, *group_keywords.names)
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

