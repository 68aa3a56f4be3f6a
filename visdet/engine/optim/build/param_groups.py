"""Paramwise rules -> one setting per parameter -> merged parameter groups.

The rules and their meaning are mmengine's ``DefaultOptimWrapperConstructor``
``paramwise_cfg`` (``custom_keys`` with the longest matching key winning,
``bias_lr_mult``, ``bias_decay_mult``, ``norm_decay_mult``,
``dwconv_decay_mult``, ``flat_decay_mult``, ``dcn_offset_lr_mult``,
``bypass_duplicate``), with two deliberate differences:

* **Precedence (mmengine#846).** A ``custom_keys`` entry overrides only the
  multipliers it sets. mmengine replaces every rule for a matched parameter,
  so ``custom_keys={'backbone': dict(lr_mult=0.1)}`` silently gives the
  backbone's norm layers and biases the full weight decay even with
  ``norm_decay_mult=0``. Here an unset ``decay_mult`` falls back to the type
  rules (norm / bias / depth-wise / flat) and an unset ``lr_mult`` to
  ``bias_lr_mult`` / ``dcn_offset_lr_mult``.
* **Groups.** mmengine makes one group per parameter (mmengine#909), which
  defeats ``foreach``/``fused`` kernels; here parameters whose settings are
  equal share one group, in first-seen order.

The multipliers (what each applies to, what it scales, which wins) are the
table ``config.paramwise.RULES``; here it is applied. Frozen parameters
(``requires_grad=False``) are left out. These are pure functions of the model
and the config; nothing is built.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.config.paramwise import DECAY, LR, RULES_BY_SETTING
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.modules import ModuleParameter, module_parameters


@dataclass
class ParamSetting:
    """What the rules decided for one parameter.

    Attributes:
        name: Its name in ``model.named_parameters()``.
        param: The parameter.
        route: Which optimizer takes it (``'main'`` unless split by shape).
        lr: Its learning rate.
        weight_decay: Its weight decay; None when the config sets none.
        overrides: Other group keys a ``custom_keys`` entry sets (``betas``...).
        lr_rule: The rule that set ``lr`` (``'base'`` when none did).
        decay_rule: The rule that set ``weight_decay``.
        custom_key: The ``custom_keys`` entry that matched it, if any.
    """

    name: str
    param: torch.Tensor
    route: str
    lr: float
    weight_decay: float | None
    overrides: dict[str, Any] = field(default_factory=dict)
    lr_rule: str = "base"
    decay_rule: str = "base"
    custom_key: str | None = None

    def group_key(self) -> tuple:
        """Parameters with equal keys can share a group."""
        return (self.route, self.lr, self.weight_decay, tuple(sorted((k, repr(v)) for k, v in self.overrides.items())))


@dataclass
class ParamPlan:
    """Settings for every trainable parameter, plus what the rules did not touch."""

    settings: list[ParamSetting]
    frozen: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (skipped name, kept name)
    unused_custom_keys: list[str] = field(default_factory=list)
    shadowed_by: dict[str, list[str]] = field(default_factory=dict)  # unused key -> longer keys that won

    def groups(self, route: str | None = None) -> list[dict[str, Any]]:
        """Merged parameter groups (of one route, or all)."""
        return merge_groups([s for s in self.settings if route is None or s.route == route])


def plan_param_groups(
    model: nn.Module,
    paramwise_cfg: Mapping[str, Any] | None,
    bases: Mapping[str, tuple[float, float | None]],
    route_of: Mapping[str, str] | None = None,
) -> ParamPlan:
    """Decide lr, weight decay and group overrides for every trainable parameter.

    Args:
        model: The model (a DDP/FSDP wrapper's ``.module`` is used).
        paramwise_cfg: A checked ``paramwise_cfg`` (see ``config.paramwise``).
        bases: Per route, the base ``(lr, weight_decay)`` the multipliers scale.
        route_of: Parameter name -> route; ``'main'`` for unnamed ones.

    Returns:
        The plan; ``plan.groups()`` gives the parameter groups to build with.
    """
    model = getattr(model, "module", model)
    cfg = dict(paramwise_cfg or {})
    custom_keys: Mapping[str, Mapping[str, Any]] = cfg.get("custom_keys", {})
    # Longest key first, ties alphabetical: mmengine's order.
    ordered_keys = sorted(sorted(custom_keys), key=len, reverse=True)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=True)}
    route_of = route_of or {}

    plan = ParamPlan(settings=[])
    seen: dict[int, ParamSetting] = {}
    applied: set[str] = set()
    winners_at: dict[str, str | None] = {}  # full name as mmengine matches it -> winning key
    for site in module_parameters(model, remove_duplicate=False):  # repeats included, as mmengine visits them
        param, path = site.param, site.name
        if not param.requires_grad:
            if id(param) not in seen and path not in plan.frozen:
                plan.frozen.append(path)
            continue
        name = names.get(id(param), path)
        setting = _setting(cfg, custom_keys, ordered_keys, site, name, route_of.get(name, "main"), bases)
        if id(param) in seen:
            kept = seen[id(param)]
            plan.duplicates.append((path, kept.name))
            if not cfg.get("bypass_duplicate", False) and _effect(setting) != _effect(kept):
                raise OptimizerConfigError(
                    f"parameter '{kept.name}' is shared with '{path}' and the rules give them different "
                    f"settings ({_effect(kept)} vs {_effect(setting)}); set paramwise_cfg.bypass_duplicate=True "
                    "to keep the first, or make the rules agree",
                    "optim_wrapper.paramwise_cfg",
                )
            continue
        seen[id(param)] = setting
        plan.settings.append(setting)
        winners_at[f"{site.prefix}.{site.local}"] = setting.custom_key
        if setting.custom_key is not None:
            applied.add(setting.custom_key)
    plan.unused_custom_keys = [k for k in custom_keys if k not in applied]
    for key in plan.unused_custom_keys:
        winners = {w for full, w in winners_at.items() if key in full and w is not None}
        if winners:
            plan.shadowed_by[key] = sorted(winners)
    return plan


def _effect(setting: ParamSetting) -> tuple:
    return (setting.route, setting.lr, setting.weight_decay, tuple(sorted(setting.overrides.items())))


def _type_rule(cfg: Mapping[str, Any], setting: str, site: ModuleParameter) -> tuple[Any, str]:
    """The multiplier of ``setting`` the type rules give ``site`` and the rule's key; ``(None, 'base')`` if none."""
    for rule in RULES_BY_SETTING[setting]:
        if cfg.get(rule.key) is not None and rule.applies(site):
            return cfg[rule.key], rule.key
    return None, "base"


def _setting(
    cfg: Mapping[str, Any],
    custom_keys: Mapping[str, Mapping[str, Any]],
    ordered_keys: list[str],
    site: ModuleParameter,
    name: str,
    route: str,
    bases: Mapping[str, tuple[float, float | None]],
) -> ParamSetting:
    base_lr, base_wd = bases[route]
    # The type rules, exactly as mmengine applies them to unmatched parameters.
    lr_mult, lr_rule = _type_rule(cfg, LR, site)
    decay_mult, decay_rule = _type_rule(cfg, DECAY, site) if base_wd is not None else (None, "base")

    # custom_keys: the longest key in '{prefix}.{name}' overrides what it sets.
    overrides: dict[str, Any] = {}
    matched = None
    full = f"{site.prefix}.{site.local}"
    for key in ordered_keys:
        if key in full:
            rule = custom_keys[key]
            label = f"custom_keys[{key!r}]"
            if "lr_mult" in rule:
                lr_mult, lr_rule = rule["lr_mult"], label
            if "decay_mult" in rule and base_wd is not None:
                decay_mult, decay_rule = rule["decay_mult"], label
            matched = key
            overrides = {k: v for k, v in rule.items() if k not in ("lr_mult", "decay_mult", "lr", "weight_decay")}
            break

    lr = base_lr * lr_mult if lr_mult is not None else base_lr
    weight_decay = None if base_wd is None else (base_wd * decay_mult if decay_mult is not None else base_wd)
    if matched is not None:  # absolute values win over multipliers, as mmengine copies them last
        rule = custom_keys[matched]
        if "lr" in rule:
            lr, lr_rule = rule["lr"], f"custom_keys[{matched!r}]"
        if "weight_decay" in rule:
            weight_decay, decay_rule = rule["weight_decay"], f"custom_keys[{matched!r}]"
    return ParamSetting(name, site.param, route, lr, weight_decay, overrides, lr_rule, decay_rule, matched)


def merge_groups(settings: list[ParamSetting]) -> list[dict[str, Any]]:
    """One group per distinct (route, lr, weight decay, overrides), first-seen order."""
    groups: dict[tuple, dict[str, Any]] = {}
    for setting in settings:
        key = setting.group_key()
        if key not in groups:
            group: dict[str, Any] = {"params": [], "lr": setting.lr}
            if setting.weight_decay is not None:
                group["weight_decay"] = setting.weight_decay
            group.update(setting.overrides)
            groups[key] = group
        groups[key]["params"].append(setting.param)
    return list(groups.values())
