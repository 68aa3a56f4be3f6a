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
(``requires_grad=False``) are planned like any other, as mmengine's
``model.parameters()`` path puts them in the optimizer: a hook that unfreezes
them later (progressive unfreezing) then trains them, and while they have no
gradient they cost nothing. Only tensors that can never have a gradient
(integer dtypes) are left out. A ``custom_keys`` entry with an ``optimizer``
dict routes what it matches to that optimizer (route name: the key), whose
own lr and weight decay the multipliers scale. These are pure functions of
the model and the config; nothing is built.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.build.layer_depth import apply_layer_decay
from visdet.engine.optim.build.no_weight_decay import apply_no_weight_decay
from visdet.engine.optim.config.paramwise import DECAY, LR, RULES_BY_SETTING
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.modules import ModuleParameter, module_parameters

#: Keys of a ``custom_keys`` entry that are not copied into its parameters' group.
NOT_GROUP_KEYS = ("lr_mult", "decay_mult", "lr", "weight_decay", "optimizer")


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
    layer_id: int | None = None  # its depth under layer_decay (build/layer_depth.py)
    layer_scale: float = 1.0  # the lr factor layer_decay multiplied in

    def group_key(self) -> tuple:
        """Parameters with equal keys can share a group."""
        return (self.route, self.lr, self.weight_decay, tuple(sorted((k, repr(v)) for k, v in self.overrides.items())))


@dataclass
class ParamPlan:
    """Settings for every parameter, plus what the rules did not touch.

    ``frozen`` names the parameters with ``requires_grad=False`` (planned, in
    ``settings``); ``left_out`` those that can never have a gradient.
    """

    settings: list[ParamSetting]
    frozen: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (skipped name, kept name)
    unused_custom_keys: list[str] = field(default_factory=list)
    shadowed_by: dict[str, list[str]] = field(default_factory=dict)  # unused key -> longer keys that won

    def groups(self, route: str | None = None, trainable_only: bool = False) -> list[dict[str, Any]]:
        """Merged parameter groups (of one route, or all; without frozen parameters if ``trainable_only``)."""
        return merge_groups([
            s for s in self.settings
            if (route is None or s.route == route) and (s.param.requires_grad or not trainable_only)
        ])


def plan_param_groups(
    model: nn.Module,
    paramwise_cfg: Mapping[str, Any] | None,
    bases: Mapping[str, tuple[float, float | None]],
    route_of: Mapping[str, str] | None = None,
    prefix: str = "",
) -> ParamPlan:
    """Decide lr, weight decay, group overrides and route for every parameter.

    Args:
        model: The model (a DDP/FSDP wrapper's ``.module`` is used).
        paramwise_cfg: A checked ``paramwise_cfg`` (see ``config.paramwise``).
        bases: Per route, the base ``(lr, weight_decay)`` the multipliers scale.
        route_of: Parameter name -> route; ``'main'`` for unnamed ones. A
            ``custom_keys`` entry with an ``optimizer`` overrides it.
        prefix: ``model``'s own name, when it is a part of a larger model
            (mmengine's ``add_params(prefix=...)``): names and key matching use it.

    Returns:
        The plan; ``plan.groups()`` gives the parameter groups to build with.
    """
    model = getattr(model, "module", model)
    cfg = dict(paramwise_cfg or {})
    custom_keys: Mapping[str, Mapping[str, Any]] = cfg.get("custom_keys", {})
    # Longest key first, ties alphabetical: mmengine's order.
    ordered_keys = sorted(sorted(custom_keys), key=len, reverse=True)
    names = {id(p): _join(prefix, n) for n, p in model.named_parameters(remove_duplicate=True)}
    route_of = route_of or {}

    plan = ParamPlan(settings=[])
    seen: dict[int, ParamSetting] = {}
    applied: set[str] = set()
    winners_at: dict[str, str | None] = {}  # full name as mmengine matches it -> winning key
    for site in module_parameters(model, remove_duplicate=False):  # repeats included, as mmengine visits them
        param, path = site.param, _join(prefix, site.name)
        if not (param.is_floating_point() or param.is_complex()):  # can never get a gradient
            if path not in plan.left_out:
                plan.left_out.append(path)
            continue
        name = names.get(id(param), path)
        if not param.requires_grad and id(param) not in seen:
            plan.frozen.append(name)
        setting = _setting(cfg, custom_keys, ordered_keys, site, name, route_of.get(name, "main"), bases, prefix)
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
        winners_at[f"{_join(prefix, site.prefix)}.{site.local}"] = setting.custom_key
        if setting.custom_key is not None:
            applied.add(setting.custom_key)
    apply_layer_decay(plan.settings, model, cfg, prefix)  # lr x rate ** depth (build/layer_depth.py)
    apply_no_weight_decay(plan.settings, model, cfg, prefix)  # the model's no_weight_decay() names
    plan.unused_custom_keys = [k for k in custom_keys if k not in applied]
    for key in plan.unused_custom_keys:
        winners = {w for full, w in winners_at.items() if key in full and w is not None}
        if winners:
            plan.shadowed_by[key] = sorted(winners)
    return plan


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


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
    prefix: str = "",
) -> ParamSetting:
    # custom_keys: the longest key in '{prefix}.{name}' (mmengine's string) matches.
    full = f"{_join(prefix, site.prefix)}.{site.local}"
    matched = next((key for key in ordered_keys if key in full), None)
    if matched is not None and "optimizer" in custom_keys[matched]:
        route = matched  # a per-module optimizer: its own route, lr and weight decay
    base_lr, base_wd = bases[route]
    # The type rules, exactly as mmengine applies them to unmatched parameters.
    lr_mult, lr_rule = _type_rule(cfg, LR, site)
    decay_mult, decay_rule = _type_rule(cfg, DECAY, site) if base_wd is not None else (None, "base")

    # The matched key overrides what it sets.
    overrides: dict[str, Any] = {}
    if matched is not None:
        rule = custom_keys[matched]
        label = f"custom_keys[{matched!r}]"
        if "lr_mult" in rule:
            lr_mult, lr_rule = rule["lr_mult"], label
        if "decay_mult" in rule and base_wd is not None:
            decay_mult, decay_rule = rule["decay_mult"], label
        overrides = {k: v for k, v in rule.items() if k not in NOT_GROUP_KEYS}

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
