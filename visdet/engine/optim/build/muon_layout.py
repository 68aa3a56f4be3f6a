"""The ``use_muon`` group layout of pytorch-optimizer's Muon family, planned with visdet's Muon routing.

pytorch-optimizer's Muon, AdaMuon, NorMuon, MuonClip, AdaGO and
DistributedMuon take one optimizer over groups each flagged ``use_muon``:
``True`` groups get the orthogonalised (Newton-Schulz) update with ``lr`` and
``weight_decay``, ``False`` groups the class's own AdamW update with
``adamw_lr``, ``adamw_betas``, ``adamw_wd``. A record with ``layout`` set
(catalog/spec.py) gets that layout from the constructor:

* which parameter is a matrix is decided by the routing the Muon hybrid uses
  (``hybrid/routing.py``): hidden 2-D weights and conv kernels get the Muon
  update; biases, norms, embeddings, the stem and the prediction heads the
  AdamW part. Conv kernels go to Muon as they are: these classes view every
  N-D update as ``(out, -1)`` themselves, so no 2-D views
  (``hybrid/matrix_views.py``) are needed;
* the two parts are planned as two routes of one optimizer, so the paramwise
  rules (``lr_mult``, ``decay_mult``, ``custom_keys``, layer decay) scale each
  part's own base, ``(lr, weight_decay)`` and ``(adamw_lr, adamw_wd)``, and
  equal settings merge into one group per part;
* ``'use_muon_shapes'`` (DistributedMuon) splits the Muon groups by shape: it
  all-gathers each block of world-size tensors of a group, which must be equal
  in shape.

Written here rather than calling ``pytorch_optimizer.prepare_muon_parameters``:
that helper builds the optimizer itself from two groups (so no paramwise rules)
and sends every parameter whose name contains ``'head'`` to AdamW, which for a
detector is every RPN and RoI-head layer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from mmengine.logging import print_log
from torch import nn

from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.config.optimizer_config import OptimizerConfig
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer
from visdet.engine.optim.hybrid.routing import FALLBACK, MATRIX, Route, route_parameters

__all__ = ["LAYOUTS", "USE_MUON", "USE_MUON_SHAPES", "MuonLayout", "flag_groups", "layout_for"]

USE_MUON = "use_muon"
USE_MUON_SHAPES = "use_muon_shapes"
LAYOUTS = (USE_MUON, USE_MUON_SHAPES)
FLAG = "use_muon"  # the group key the classes read
ROUTES = (MATRIX, FALLBACK)
#: The main route's name in the constructor (build/constructor.py's MAIN), beside per-module optimizers.
MAIN = "main"

#: Builds one optimizer: (config, groups, plan, route whose kwargs to use) -> optimizer (the constructor's).
BuildFn = Callable[[OptimizerConfig, list, Any, str], torch.optim.Optimizer]


def layout_for(cfg: OptimizerConfig) -> MuonLayout | None:
    """The layout ``cfg``'s class needs (its record's ``layout``), or None for a plain list of groups.

    Raises:
        OptimizerConfigError: a layout class with the Muon hybrid's options
            (it has its own AdamW part), or sharded by ZeroRedundancyOptimizer.
    """
    if cfg.inner is not None:
        inner = spec_for_class(cfg.inner.cls)
        if inner is not None and inner.layout:
            raise OptimizerConfigError(
                f"{cfg.inner.name} lays out its own use_muon groups, which ZeroRedundancyOptimizer's shards do not "
                "keep; use it without ZeroRedundancyOptimizer", cfg.key)
        return None
    spec = spec_for_class(cfg.cls)
    if spec is None or not spec.layout:
        return None
    if spec.layout not in LAYOUTS:
        raise OptimizerConfigError(f"{cfg.name}: unknown parameter layout {spec.layout!r} in its record", cfg.key)
    if cfg.is_hybrid:
        raise OptimizerConfigError(
            f"{cfg.name} has its own AdamW part for the parameters that are not matrices (adamw_lr, adamw_betas, "
            "adamw_wd): remove fallback, flatten_conv and fallback_keys", f"{cfg.key}.fallback")
    return MuonLayout(spec.layout)


def adamw_part(cfg: OptimizerConfig) -> OptimizerConfig:
    """The AdamW part of ``cfg`` as a route: its base lr is ``adamw_lr``, its base weight decay ``adamw_wd``.

    The weight decay base is the configured ``adamw_wd`` only (None when unset:
    the class's default then applies and decay rules leave the part alone), as
    for ``weight_decay`` everywhere else.
    """
    lr = cfg.kwargs.get("adamw_lr", cfg.keywords.defaults.get("adamw_lr"))
    if lr is None:
        raise OptimizerConfigError(f"{cfg.name} has no default adamw_lr; set adamw_lr", cfg.key)
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "weight_decay"}
    kwargs["lr"] = lr
    if cfg.kwargs.get("adamw_wd") is not None:
        kwargs["weight_decay"] = cfg.kwargs["adamw_wd"]
    return replace(cfg, name=f"{cfg.name} (AdamW part)", kwargs=kwargs)


def flag_groups(matrix: list[dict[str, Any]], other: list[dict[str, Any]], layout: str = USE_MUON
                ) -> list[dict[str, Any]]:
    """Groups flagged for a Muon-family class: ``matrix`` groups ``use_muon=True``, ``other`` ``False``.

    Under ``'use_muon_shapes'`` each Muon group is split into one group per
    parameter shape (first-seen order).
    """
    muon = [{**group, FLAG: True} for group in matrix]
    if layout == USE_MUON_SHAPES:
        muon = [part for group in muon for part in _split_by_shape(group)]
    return muon + [{**group, FLAG: False} for group in other]


def _split_by_shape(group: dict[str, Any]) -> list[dict[str, Any]]:
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for param in group["params"]:
        by_shape.setdefault(tuple(param.shape), []).append(param)
    return [{**group, "params": params} for params in by_shape.values()]


@dataclass(frozen=True)
class MuonLayout:
    """How the constructor plans and builds a class that takes ``use_muon`` groups.

    Attributes:
        kind: ``'use_muon'`` or ``'use_muon_shapes'``.
    """

    kind: str

    def routes(self, cfg: OptimizerConfig) -> dict[str, OptimizerConfig]:
        """The two parts as routes with their own bases: the Muon update and the AdamW part."""
        return {MATRIX: cfg, FALLBACK: adamw_part(cfg)}

    @staticmethod
    def route(module: nn.Module) -> dict[str, Route]:
        """Which part each parameter goes to and why: the Muon routing, conv kernels to the Muon update."""
        return route_parameters(module, flatten_conv=True)

    @staticmethod
    def flag(settings: list[Any]) -> None:
        """Set ``use_muon`` on every planned setting of the two parts, so merged groups and the report carry it."""
        for setting in settings:
            if setting.route in ROUTES:
                setting.overrides = {**setting.overrides, FLAG: setting.route == MATRIX}

    def build(self, plan: Any, build: BuildFn) -> torch.optim.Optimizer:
        """One optimizer over both parts' groups; per-module optimizers (``custom_keys[k].optimizer``) beside it."""
        matrix, other = plan.param_plan.groups(MATRIX), plan.param_plan.groups(FALLBACK)
        groups = flag_groups(matrix, other, self.kind)
        route = MATRIX if MATRIX in plan.kwargs else FALLBACK  # the kwargs of a part that has parameters
        main = build(plan.routes[MATRIX], groups, plan, route)
        # These classes keep only `foreach` in `defaults`; mmengine's OptimWrapper tracks the base lr in a
        # settings group made from them (its `param_groups` adds it), which a scheduler then needs an lr in.
        main.defaults.setdefault("lr", plan.routes[MATRIX].base()[0])
        optimizers = {MAIN: main}
        for name, cfg in plan.routes.items():
            if name not in ROUTES and plan.param_plan.groups(name):
                optimizers[name] = build(cfg, plan.param_plan.groups(name), plan, name)
        name = plan.routes[MATRIX].name
        print_log(f"parameter tensors: {name}'s Muon update takes {_count(matrix)}, its AdamW part {_count(other)} "
                  "(see tools/print_param_groups.py for which and why)", logger="current")
        return optimizers[MAIN] if len(optimizers) == 1 else HybridOptimizer(optimizers)


def _count(groups: list[dict[str, Any]]) -> int:
    return sum(len(group["params"]) for group in groups)
