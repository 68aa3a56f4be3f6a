"""The dry-run report: which group, lr, weight decay and optimizer each parameter gets.

Answers "what will my paramwise_cfg / Muon routing / per-module optimizers
actually do?" without training: every parameter with its settings and the rule that set
them, then what no rule matched, frozen and shared parameters, and the
merged groups. ``tools/print_param_groups.py`` prints it for a config.
"""
from __future__ import annotations

from typing import Any

from mmengine.registry import DefaultScope
from torch import nn

from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

from visdet.engine.optim.build.constructor import BuildPlan, OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.tables import text_table


MAX_LISTED = 30


def plan_for(model: nn.Module, optim_wrapper_cfg: dict[str, Any]) -> BuildPlan:
    """The plan the default constructor would build for ``model`` (nothing is built)."""
    cfg = dict(optim_wrapper_cfg)
    constructor = cfg.pop("constructor", None)
    if constructor is not None and not _is_visdet_constructor(constructor):
        raise OptimizerConfigError(
            f"the dry run shows what visdet's constructor builds, but this config uses {constructor!r}; "
            "remove optim_wrapper.constructor to use visdet's",
            "optim_wrapper.constructor",
        )
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    return OptimWrapperConstructor(cfg, paramwise_cfg).plan(model)


def _is_visdet_constructor(constructor: Any) -> bool:
    if isinstance(constructor, type):
        return issubclass(constructor, OptimWrapperConstructor)
    with DefaultScope.overwrite_default_scope("visdet"):
        found = OPTIM_WRAPPER_CONSTRUCTORS.get(constructor)
    return isinstance(found, type) and issubclass(found, OptimWrapperConstructor)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_plan(plan: BuildPlan) -> str:
    """The report as text: parameters, then groups, then what nothing matched."""
    groups_index: dict[int, int] = {}
    group_rows: list[list[str]] = []
    for route, cfg in plan.routes.items():
        for group in plan.param_plan.groups(route):
            index = len(group_rows)
            for param in group["params"]:
                groups_index[id(param)] = index
            extra = {k: v for k, v in group.items() if k not in ("params", "lr", "weight_decay")}
            group_rows.append([
                str(index), cfg.name, str(len(group["params"])), f"{sum(p.numel() for p in group['params']):,}",
                _fmt(group["lr"]), _fmt(group.get("weight_decay")), ", ".join(f"{k}={v}" for k, v in extra.items()),
            ])
    hybrid = len(plan.routes) > 1
    rows = []
    for s in plan.param_plan.settings:
        rule = s.lr_rule if s.lr_rule == s.decay_rule else f"lr: {s.lr_rule}; decay: {s.decay_rule}"
        row = [s.name, "x".join(map(str, s.param.shape)) or "scalar", str(groups_index[id(s.param)]),
               plan.routes[s.route].name, _fmt(s.lr), _fmt(s.weight_decay), rule]
        if hybrid:
            row.append(plan.reasons.get(s.name, ""))
        rows.append(row)
    header = ["parameter", "shape", "group", "optimizer", "lr", "weight_decay", "set by"]
    if hybrid:
        header.append("route reason")
    lines = text_table(header, rows)
    headers = ["group", "optimizer", "tensors", "values", "lr", "weight_decay", "other"]
    lines += ["", "Groups:"] + text_table(headers, group_rows)
    lines.append("")
    for route, cfg in plan.routes.items():
        if route in plan.implementations:
            lines.append(f"{cfg.name} implementation: {plan.implementations[route]}")
    untouched = [s.name for s in plan.param_plan.settings if s.lr_rule == "base" and s.decay_rule == "base"]
    more = len(untouched) - MAX_LISTED
    shown = ", ".join(untouched[:MAX_LISTED]) + (f", ... ({more} more)" if more > 0 else "")
    lines.append(f"No rule matched {len(untouched)} of {len(plan.param_plan.settings)} parameters "
                 "(they take the base lr and weight decay)" + (f": {shown}" if untouched else "."))
    if plan.param_plan.frozen:
        lines.append("Frozen, in the optimizer but unchanged while requires_grad=False: "
                     + ", ".join(plan.param_plan.frozen))
    if plan.param_plan.left_out:
        lines.append(f"Left out (cannot have a gradient): {', '.join(plan.param_plan.left_out)}")
    if plan.param_plan.duplicates:
        lines.append("Shared, counted once: " + ", ".join(f"{a} (= {b})" for a, b in plan.param_plan.duplicates))
    for key in plan.param_plan.unused_custom_keys:
        winners = plan.param_plan.shadowed_by.get(key)
        why = f"always overridden by {' / '.join(map(repr, winners))}" if winners else "matches no parameter"
        lines.append(f"custom_keys[{key!r}] is unused: {why}")
    return "\n".join(lines)
