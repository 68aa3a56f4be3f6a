"""A model's ``no_weight_decay()`` (timm's convention), honoured by the planned settings.

timm models name the parameters that must not be decayed (position
embeddings, class tokens, relative position tables) in a method
``no_weight_decay()`` returning a set of names. Here every module of the
model that defines it is asked (a detector's backbone too), its names taken
relative to that module, and each entry matches a parameter name exactly, as
a dotted prefix (``'pos_embed'`` covers ``'pos_embed.weight'``) or as an
``fnmatch`` pattern (``'*.relative_position_bias_table'``). mmengine's
constructor has no such hook, so it is written here.
"""
from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError

RULE = "no_weight_decay()"


def no_weight_decay_entries(model: nn.Module) -> list[str]:
    """Every entry of every module's ``no_weight_decay()``, as full parameter-name patterns of ``model``."""
    model = getattr(model, "module", model)
    entries: list[str] = []
    for prefix, module in model.named_modules():
        method = getattr(module, "no_weight_decay", None)
        if not callable(method):
            continue
        names = method()
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise OptimizerConfigError(
                f"{type(module).__name__}.no_weight_decay() must return a set of parameter names, got {names!r}",
                "model")
        entries += [f"{prefix}.{n}" if prefix else n for n in names]
    return entries


def matches(name: str, entries: list[str]) -> bool:
    """Whether ``name`` is an entry, lies under one (a dotted prefix), or fits one as a pattern."""
    return any(name == e or name.startswith(e + ".") or fnmatchcase(name, e) for e in entries)


def apply_no_weight_decay(settings: list[Any], model: nn.Module, paramwise_cfg: Mapping[str, Any],
                          prefix: str = "") -> None:
    """Weight decay 0 for the parameters the model names (``param_groups.ParamSetting``s, in place).

    Only where a weight decay is configured (like every decay rule), and not
    where a ``custom_keys`` entry sets ``decay_mult`` or ``weight_decay``: the
    config's explicit word wins over the model's default. ``prefix``:
    ``model``'s name in a larger model, which the settings' names start with.
    """
    entries = [f"{prefix}.{e}" if prefix else e for e in no_weight_decay_entries(model)]
    if not entries:
        return
    custom_keys: Mapping[str, Mapping[str, Any]] = paramwise_cfg.get("custom_keys", {})
    for setting in settings:
        if setting.weight_decay is None or not matches(setting.name, entries):
            continue
        rule = custom_keys.get(setting.custom_key, {}) if setting.custom_key is not None else {}
        if "decay_mult" in rule or "weight_decay" in rule:
            continue
        setting.weight_decay, setting.decay_rule = 0.0, RULE
