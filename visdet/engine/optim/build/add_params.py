"""The groups of a constructor subclass's ``add_params`` (mmengine's hook), as visdet's per-parameter settings.

mmengine's constructor builds the optimizer straight from the group dicts its
``add_params`` appends, one per parameter (mmengine#909). Here a subclass's
groups become the same settings visdet's own rules produce, so that equal
groups are merged, routes (Muon's split, per-module optimizers) still apply
and ``fused``/``foreach`` is still chosen. Written here because mmengine has
no step between the hook and the optimizer to reuse.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.build.param_groups import ParamPlan, ParamSetting
from visdet.engine.optim.config.paramwise import PARAMWISE_KEYS
from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY
from visdet.engine.optim.errors import OptimizerConfigError


def settings_from_groups(
    groups: list[Any],
    owner: str,
    model: nn.Module,
    planned: ParamPlan,
    bases: Mapping[str, tuple[float, float | None]],
    default_route: str,
) -> list[ParamSetting]:
    """One setting per parameter of ``groups``; a group without ``lr``/``weight_decay`` takes its route's base.

    Args:
        groups: What ``add_params`` appended.
        owner: Who appended them, for messages (``'MyConstructor.add_params'``).
        model: The model (for parameter names).
        planned: visdet's own plan of the model: each parameter's route comes from it.
        bases: Route -> (lr, weight decay) of its optimizer.
        default_route: The route of a tensor the plan does not know.

    Raises:
        OptimizerConfigError: an entry is not a dict with ``'params'``, or a parameter is in two groups.
    """
    route_of = {id(s.param): s.route for s in planned.settings}
    names = {id(p): n for n, p in model.named_parameters()}
    settings: list[ParamSetting] = []
    seen: set[int] = set()
    for group in groups:
        if not isinstance(group, Mapping) or "params" not in group:
            raise OptimizerConfigError(f"{owner} appended {group!r}; each entry must be a dict with 'params'",
                                       WRAPPER_KEY)
        params = group["params"]
        overrides = {k: v for k, v in group.items() if k not in ("params", "lr", "weight_decay")}
        for param in [params] if isinstance(params, torch.Tensor) else list(params):
            name = names.get(id(param), f"<a tensor of shape {tuple(param.shape)}>")
            if id(param) in seen:
                raise OptimizerConfigError(f"{owner} put parameter '{name}' in two groups", WRAPPER_KEY)
            seen.add(id(param))
            route = route_of.get(id(param), default_route)
            base_lr, base_wd = bases[route]
            settings.append(ParamSetting(
                name, param, route, group.get("lr", base_lr), group.get("weight_decay", base_wd), dict(overrides),
                lr_rule=owner, decay_rule=owner,
            ))
    return settings


def declared_keys(cls: type) -> tuple[str, ...]:
    """A subclass's ``extra_paramwise_keys``, checked: names, and none that visdet's rules already mean."""
    keys = cls.extra_paramwise_keys
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"{cls.__name__}.extra_paramwise_keys must be a tuple of key names, got {keys!r}")
    clash = [k for k in keys if k in PARAMWISE_KEYS]
    if clash:
        raise ValueError(f"{cls.__name__}.extra_paramwise_keys: {', '.join(clash)} already mean visdet's rules; "
                         "declare only the keys the subclass reads itself")
    return tuple(keys)
