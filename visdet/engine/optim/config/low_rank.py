"""``optim_wrapper.low_rank``: which weights GaLore / APOLLO project, checked and turned into group keys.

GaLore (galore-torch) and APOLLO (apollo-torch) project the gradient of every
parameter whose group carries ``rank`` and treat the rest as plain AdamW, so
the caller must lay out the groups. Their own examples pick the targets by
hand-written name filters in the training script; here the config names the
modules::

    optim_wrapper = dict(
        optimizer=dict(type="GaLoreAdamW", lr=1e-3),
        low_rank=dict(target_modules=["roi_head.bbox_head.shared_fcs"], rank=128,
                      update_proj_gap=200, scale=0.25, proj_type="std"),
    )

A target is a module name as in ``model.named_modules()``; it covers that
module and everything inside it, and its 2-D weights are projected (conv
kernels, biases and norms stay in plain groups). Why by hand: neither package
ships a way to build the groups from a model.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.config.arguments import check_int_at_least, check_number
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.suggestions import suggestion_text

KEY = "optim_wrapper.low_rank"
PROJ_TYPES = ("std", "reverse_std", "right", "left", "full")
#: Group keys each family reads, with the defaults of the papers' reference scripts.
GALORE_DEFAULTS: dict[str, Any] = {"rank": 128, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}
APOLLO_DEFAULTS: dict[str, Any] = {**GALORE_DEFAULTS, "rank": 256, "scale": 1.0, "proj": "random",
                                   "scale_type": "channel"}
CHOICES: dict[str, tuple[str, ...]] = {"proj_type": PROJ_TYPES, "proj": ("random", "svd"),
                                       "scale_type": ("channel", "tensor")}


def family(cls: type) -> str | None:
    """``'apollo'``, ``'galore'`` or None: whether ``cls`` projects groups that carry ``rank``, as its record says."""
    spec = spec_for_class(cls)
    return (spec.low_rank or None) if spec is not None else None


@dataclass(frozen=True)
class LowRankConfig:
    """A checked ``low_rank`` dict: the target module names and the group keys for their 2-D weights."""

    target_modules: tuple[str, ...]
    group_keys: dict[str, Any]

    def targets(self, model: nn.Module) -> dict[str, str]:
        """Parameter name -> the target that covers it, for every 2-D weight of the targets.

        Raises:
            OptimizerConfigError: a target names no module, covers no 2-D weight,
                or has a weight whose smaller side is not above ``rank``.
        """
        model = getattr(model, "module", model)
        modules = dict(model.named_modules())
        chosen: dict[str, str] = {}
        rank = self.group_keys["rank"]
        for target in self.target_modules:
            if target not in modules:
                raise OptimizerConfigError(
                    f"no module is called '{target}'"
                    f"{suggestion_text(target, [n for n in modules if n])} "
                    "Names are those of model.named_modules() (tools/print_param_groups.py lists parameters).",
                    f"{KEY}.target_modules",
                )
            weights = {
                f"{target}.{name}" if target else name: p
                for name, p in modules[target].named_parameters()
                if p.ndim == 2 and p.requires_grad
            }
            if not weights:
                raise OptimizerConfigError(
                    f"'{target}' has no trainable 2-D weight to project "
                    "(GaLore/APOLLO project matrices: name Linear layers or modules that contain them)",
                    f"{KEY}.target_modules",
                )
            for name, p in weights.items():
                if min(p.shape) <= rank:
                    raise OptimizerConfigError(
                        f"rank {rank} is not below the smaller side of '{name}' {tuple(p.shape)}, so projecting "
                        f"it saves nothing; use rank < {min(p.shape)} or leave '{target}' out of target_modules",
                        f"{KEY}.rank",
                    )
                chosen.setdefault(name, target)
        return chosen


def parse_low_rank(cfg: Any, optimizer_cls: type, optimizer_name: str) -> LowRankConfig:
    """Check ``optim_wrapper.low_rank`` against the optimizer it is for."""
    kind = family(optimizer_cls)
    if kind is None:
        raise OptimizerConfigError(
            f"{optimizer_name} does not project gradients, so low_rank has no effect; use a GaLore or APOLLO "
            "optimizer (GaLoreAdamW, GaLoreAdafactor, APOLLOAdamW) or remove low_rank",
            KEY,
        )
    if not isinstance(cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(target_modules=['fc'], rank=128), got {cfg!r}", KEY)
    defaults = APOLLO_DEFAULTS if kind == "apollo" else GALORE_DEFAULTS
    valid = ("target_modules", *defaults)
    for name in cfg:
        if name not in valid:
            raise OptimizerConfigError(
                f"unknown key '{name}'{suggestion_text(str(name), valid)} Valid keys for {optimizer_name}: "
                f"{', '.join(valid)}",
                f"{KEY}.{name}",
            )
    targets = cfg.get("target_modules")
    if (
        not isinstance(targets, (list, tuple))
        or not targets
        or not all(isinstance(t, str) and t for t in targets)
    ):
        raise OptimizerConfigError(
            f"target_modules must be a non-empty list of module names like ['roi_head.bbox_head.shared_fcs'], "
            f"got {targets!r}",
            f"{KEY}.target_modules",
        )
    keys = {**defaults, **{k: v for k, v in cfg.items() if k != "target_modules"}}
    check_int_at_least(keys["rank"], "rank", f"{KEY}.rank", 1)
    check_int_at_least(keys["update_proj_gap"], "update_proj_gap", f"{KEY}.update_proj_gap", 1)
    check_number(keys["scale"], "scale", f"{KEY}.scale", low=0.0)
    if keys["scale"] == 0:
        raise OptimizerConfigError("scale must be above 0 (it multiplies the projected update)", f"{KEY}.scale")
    for name, choices in CHOICES.items():
        if name in keys and keys[name] not in choices:
            raise OptimizerConfigError(
                f"{name} must be one of {', '.join(map(repr, choices))}, got {keys[name]!r}", f"{KEY}.{name}"
            )
    keys["scale"] = float(keys["scale"])
    return LowRankConfig(tuple(dict.fromkeys(targets)), keys)
