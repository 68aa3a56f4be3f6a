"""The OptimWrapper constructor visdet configs use by default.

Registered in visdet's ``OPTIM_WRAPPER_CONSTRUCTORS`` as
``DefaultOptimWrapperConstructor``, so mmengine's ``build_optim_wrapper``
(and the Runner) pick it for any config with ``default_scope='visdet'``;
``constructor='mmengine.DefaultOptimWrapperConstructor'`` selects
mmengine's. Over mmengine's it adds:

* every config mistake raised at build time as ``OptimizerConfigError``
  (unknown type/keyword/paramwise key, bad values, clip_grad keys,
  accumulative_counts), before the model is even looked at;
* parameter groups merged where settings are equal, and the ``fused`` /
  ``foreach`` implementation chosen when the config does not say;
* optimizers that take only matrices (Muon) paired with a fallback;
* ZeroRedundancyOptimizer over any registered optimizer.

Data flows one way: config -> checks -> catalogue -> parameter groups ->
optimizer -> wrapper.
"""
from __future__ import annotations

import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmengine.logging import print_log
from torch import nn

from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)
from mmengine.optim import OptimWrapper

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.matrix_views import matrix_view
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer
from visdet.engine.optim.hybrid.routing import FALLBACK, MATRIX, route_parameters
from visdet.engine.optim.build.implementation import choose_implementation, log_choice_once
from visdet.engine.optim.build.wrapper_type import resolve_wrapper
from visdet.engine.optim.config.low_rank import LowRankConfig, family, parse_low_rank
from visdet.engine.optim.config.optimizer_config import OptimizerConfig, parse_optimizer_cfg
from visdet.engine.optim.build.param_groups import ParamPlan, plan_param_groups
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.engine.optim.config.paramwise import check_paramwise_cfg
from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY, check_wrapper_cfg
from visdet.utils.signatures import Keywords

MAIN = "main"  # the route of a config without a fallback; MATRIX and FALLBACK are the routing's


@dataclass
class BuildPlan:
    """What the constructor will build for a model: the dry run's content.

    Attributes:
        param_plan: Per-parameter settings and merged groups.
        routes: Route name -> the optimizer config that takes it.
        reasons: Parameter name -> why it went to its route (shape splits only).
        implementations: Route name -> the implementation chosen.
        kwargs: Route name -> the keywords the optimizer is built with.
    """

    param_plan: ParamPlan
    routes: dict[str, OptimizerConfig]
    reasons: dict[str, str] = field(default_factory=dict)
    implementations: dict[str, str] = field(default_factory=dict)
    kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(
    name=["DefaultOptimWrapperConstructor", "OptimWrapperConstructor"], force=True  # force: survives reload
)
class OptimWrapperConstructor:
    """Build an ``OptimWrapper`` from ``optim_wrapper`` config and a model.

    Args:
        optim_wrapper_cfg: The ``optim_wrapper`` dict without
            ``paramwise_cfg`` and ``constructor`` (mmengine's builder pops them).
        paramwise_cfg: Per-parameter rules; the keys and meaning of mmengine's
            DefaultOptimWrapperConstructor, with the precedence documented in
            ``visdet.engine.optim.build.param_groups``.

    Raises:
        OptimizerConfigError: on any configuration mistake, here in
            ``__init__``, before any model or data work.
    """

    def __init__(self, optim_wrapper_cfg: Mapping[str, Any], paramwise_cfg: Mapping[str, Any] | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, Mapping):
            raise OptimizerConfigError(f"must be a dict, got {optim_wrapper_cfg!r}", WRAPPER_KEY)
        cfg = dict(optim_wrapper_cfg)
        if "paramwise_cfg" in cfg:  # called directly rather than through build_optim_wrapper
            if paramwise_cfg is not None:
                raise OptimizerConfigError("paramwise_cfg given twice", WRAPPER_KEY)
            paramwise_cfg = cfg.pop("paramwise_cfg")
        cfg.pop("constructor", None)
        if "optimizer" not in cfg:
            raise OptimizerConfigError(
                "has no 'optimizer'; add e.g. optimizer=dict(type='AdamW', lr=1e-4)", WRAPPER_KEY
            )
        self.optimizer = parse_optimizer_cfg(cfg.pop("optimizer"), f"{WRAPPER_KEY}.optimizer")
        self.low_rank = _parse_low_rank(cfg.pop("low_rank", None), self.optimizer)
        cfg.setdefault("type", "OptimWrapper")
        self.wrapper_cls = resolve_wrapper(cfg["type"])
        self.wrapper_cfg = cfg
        check_wrapper_cfg(cfg, self.wrapper_cls)  # the wrapper checks its values again: it is built directly too
        if paramwise_cfg is not None and not isinstance(paramwise_cfg, Mapping):
            raise OptimizerConfigError(
                f"must be a dict like dict(norm_decay_mult=0.0), got {paramwise_cfg!r}", f"{WRAPPER_KEY}.paramwise_cfg"
            )
        self.paramwise_cfg = dict(paramwise_cfg or {})
        routes = self._routes()
        # A custom_keys entry may set any keyword one of the optimizers takes.
        group_keywords = Keywords(
            names=tuple(dict.fromkeys(n for r in routes.values() for n in r.keywords.names)),
            defaults={k: v for r in reversed(list(routes.values())) for k, v in r.keywords.defaults.items()},
        )
        for route in routes.values():
            check_paramwise_cfg(self.paramwise_cfg, group_keywords, route.kwargs, optimizer_key=route.key)

    def _routes(self) -> dict[str, OptimizerConfig]:
        fallback = self.optimizer.fallback
        if fallback is not None:
            return {MATRIX: self.optimizer, FALLBACK: fallback}
        return {MAIN: self.optimizer}

    def plan(self, model: nn.Module) -> BuildPlan:
        """Decide routes, groups, lr and weight decay for ``model``'s parameters."""
        model = getattr(model, "module", model)
        routes = self._routes()
        route_of: dict[str, str] = {}
        reasons: dict[str, str] = {}
        if self.optimizer.is_hybrid:
            decided = route_parameters(
                model, flatten_conv=self.optimizer.flatten_conv, fallback_keys=self.optimizer.fallback_keys
            )
            for name, route in decided.items():
                route_of[name] = route.route
                reasons[name] = route.reason
        bases = {name: cfg.base() for name, cfg in routes.items()}
        param_plan = plan_param_groups(model, self.paramwise_cfg, bases, route_of)
        if not param_plan.settings:
            raise OptimizerConfigError("the model has no trainable parameters to optimize", f"{WRAPPER_KEY}.optimizer")
        if self.low_rank is not None:  # GaLore / APOLLO: the targets' 2-D weights get the projection keys
            targets = self.low_rank.targets(model)
            for setting in param_plan.settings:
                if setting.name in targets:
                    setting.overrides = {**setting.overrides, **self.low_rank.group_keys}
        plan = BuildPlan(param_plan, routes, reasons)
        sparse = _has_sparse_grads(model)
        for route, cfg in routes.items():
            groups = param_plan.groups(route)
            if groups:
                impl_cls = cfg.inner.cls if cfg.inner is not None else cfg.cls
                plan.kwargs[route], plan.implementations[route] = choose_implementation(
                    impl_cls, cfg.keywords, dict(cfg.kwargs), groups, cfg.key, sparse_grads=sparse
                )
        return plan

    def __call__(self, model: nn.Module) -> OptimWrapper:
        plan = self.plan(model)
        _warn_unused_custom_keys(plan.param_plan)
        optimizers: dict[str, torch.optim.Optimizer] = {}
        views: dict[torch.Tensor, torch.Tensor] = {}
        for route, cfg in plan.routes.items():
            groups = plan.param_plan.groups(route)
            if not groups:
                continue
            if route == MATRIX:
                groups = _with_matrix_views(groups, views)
            optimizers[route] = self._build_optimizer(cfg, groups, plan, route)
        if self.optimizer.is_hybrid:
            optimizer: torch.optim.Optimizer = HybridOptimizer(optimizers, views=views)
            print_log(
                f"{self.optimizer.name} takes {_count(optimizers.get(MATRIX))} parameter tensors, "
                f"{self.optimizer.fallback.name if self.optimizer.fallback else ''} takes "
                f"{_count(optimizers.get(FALLBACK))} (see tools/print_param_groups.py for which and why)",
                logger="current",
            )
        else:
            optimizer = optimizers[MAIN]
        return OPTIM_WRAPPERS.build(self.wrapper_cfg, default_args=dict(optimizer=optimizer))

    def _build_optimizer(
        self, cfg: OptimizerConfig, groups: list[dict[str, Any]], plan: BuildPlan, route: str
    ) -> torch.optim.Optimizer:
        kwargs, implementation = plan.kwargs[route], plan.implementations[route]
        build_cfg: dict[str, Any] = {"type": cfg.cls, "params": groups, **kwargs}
        if cfg.inner is not None:
            build_cfg["optimizer_class"] = cfg.inner.cls
        try:
            optimizer = OPTIMIZERS.build(build_cfg)
        except OptimizerConfigError:
            raise
        except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
            # AssertionError: some packages check arguments with a bare assert (lion-pytorch: lr > 0).
            raise OptimizerConfigError(f"{cfg.name} refused its arguments: {_refusal_text(exc)}", cfg.key) from exc
        device = groups[0]["params"][0].device.type
        log_choice_once(cfg.name, implementation, device)
        return optimizer


def _refusal_text(exc: BaseException) -> str:
    """The optimizer's own words, or for a bare ``assert`` the line that failed (its message is empty)."""
    text = str(exc)
    if text:
        return text
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        frame = frames[-1]
        return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}: `{frame.line}`"
    return type(exc).__name__


def _parse_low_rank(cfg: Any, optimizer: OptimizerConfig) -> LowRankConfig | None:
    """``optim_wrapper.low_rank`` for GaLore / APOLLO (see ``low_rank.py``); warn when such an optimizer has none."""
    if cfg is None:
        if family(optimizer.cls) is not None:
            warnings.warn(
                f"{WRAPPER_KEY}: {optimizer.name} without low_rank projects nothing and runs as plain AdamW; add "
                "low_rank=dict(target_modules=[...]) naming the modules whose 2-D weights it should project",
                OptimizerConfigWarning,
                stacklevel=3,
            )
        return None
    if optimizer.is_hybrid or optimizer.inner is not None:
        raise OptimizerConfigError(
            f"low_rank needs a GaLore or APOLLO optimizer as optim_wrapper.optimizer, not {optimizer.name}",
            f"{WRAPPER_KEY}.low_rank",
        )
    return parse_low_rank(cfg, optimizer.cls, optimizer.name)


def _has_sparse_grads(model: nn.Module) -> bool:
    """Whether a module produces sparse gradients (its parameters look dense)."""
    return any(
        getattr(m, "sparse", False) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
    )


def _warn_unused_custom_keys(plan: ParamPlan) -> None:
    """Warn about ``custom_keys`` entries that set nothing, and say why."""
    if not plan.unused_custom_keys:
        return
    parts = []
    for key in plan.unused_custom_keys:
        winners = plan.shadowed_by.get(key)
        if winners:
            parts.append(f"{key!r} is always overridden by the longer key {' / '.join(map(repr, winners))}")
        else:
            parts.append(f"{key!r} matched no trainable parameter")
    warnings.warn(
        f"{WRAPPER_KEY}.paramwise_cfg.custom_keys: {'; '.join(parts)} (a key applies to the names that contain it, "
        "and only the longest matching key applies). Run tools/print_param_groups.py to see each parameter's "
        "name and settings.",
        OptimizerConfigWarning,
        stacklevel=3,
    )


def _count(optimizer: torch.optim.Optimizer | None) -> int:
    return 0 if optimizer is None else sum(len(g["params"]) for g in optimizer.param_groups)


def _with_matrix_views(groups: list[dict[str, Any]], views: dict[torch.Tensor, torch.Tensor]) -> list[dict[str, Any]]:
    """Replace parameters with more than 2 dims by their 2-D views (conv kernels for Muon)."""
    out = []
    for group in groups:
        params = []
        for param in group["params"]:
            if param.ndim > 2:
                view = matrix_view(param)
                views[view] = param
                params.append(view)
            else:
                params.append(param)
        out.append({**group, "params": params})
    return out
