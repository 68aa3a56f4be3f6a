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
* per-module optimizer types (``custom_keys[k].optimizer``) behind one
  optimizer;
* ZeroRedundancyOptimizer over any registered optimizer.

It keeps mmengine's extension points: the attributes ``optimizer_cfg``,
``paramwise_cfg``, ``base_lr``, ``base_wd`` and the ``add_params`` hook
(see ``OptimWrapperConstructor.add_params``), so an mmengine-style subclass
works; its own paramwise keys are declared in ``extra_paramwise_keys``.

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
from visdet.engine.optim.build.param_groups import ParamPlan, ParamSetting, plan_param_groups
from visdet.engine.optim.build.add_params import declared_keys, settings_from_groups
from visdet.engine.optim.build.notices import log_frozen_and_shared, warn_unused_custom_keys
from visdet.engine.optim.build.nested_optimizer import class_wrapper_cfg, wrap_in_shells
from visdet.engine.optim.build.muon_layout import layout_for
from visdet.engine.optim.build.model_argument import build_model_wrapper, check_model_config, takes_model
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.engine.optim.config.custom_optimizers import parse_custom_optimizers
from visdet.engine.optim.config.paramwise import check_paramwise_cfg
from visdet.engine.optim.config.closure_checks import check_closure_cfg
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

    Attributes:
        optimizer_cfg: The ``optimizer`` dict (mmengine's attribute; a subclass
            may change it before the call, it is checked again then).
        optim_wrapper_cfg: The wrapper dict without ``optimizer``.
        paramwise_cfg: The ``paramwise_cfg`` dict (``{}`` when none).
        base_lr: ``optimizer_cfg['lr']`` (None when unset), as mmengine.
        base_wd: ``optimizer_cfg['weight_decay']`` (None when unset), as mmengine.
        extra_paramwise_keys: Class attribute: the ``paramwise_cfg`` keys a
            subclass reads itself (e.g. ``('conv1_lr_mult',)``). visdet's check
            accepts them and still refuses every other unknown key.

    Raises:
        OptimizerConfigError: on any configuration mistake, here in
            ``__init__``, before any model or data work.
    """

    extra_paramwise_keys: tuple[str, ...] = ()

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
        raw_optimizer = cfg.pop("optimizer")
        self.optimizer = parse_optimizer_cfg(raw_optimizer, f"{WRAPPER_KEY}.optimizer")
        self.optimizer_cfg: dict[str, Any] = dict(raw_optimizer)
        self._checked_optimizer_cfg = dict(raw_optimizer)
        self.base_lr = self.optimizer_cfg.get("lr")
        self.base_wd = self.optimizer_cfg.get("weight_decay")
        self.low_rank = _parse_low_rank(cfg.pop("low_rank", None), self.optimizer)
        cfg.setdefault("type", "OptimWrapper")
        self.wrapper_cls = resolve_wrapper(cfg["type"])
        self.wrapper_cfg = cfg
        self.optim_wrapper_cfg = cfg  # mmengine's name for it
        check_wrapper_cfg(cfg, self.wrapper_cls)  # the wrapper checks its values again: it is built directly too
        check_closure_cfg(cfg, raw_optimizer)  # closure optimizers: no accumulation, no float16 scaler
        if paramwise_cfg is not None and not isinstance(paramwise_cfg, Mapping):
            raise OptimizerConfigError(
                f"must be a dict like dict(norm_decay_mult=0.0), got {paramwise_cfg!r}", f"{WRAPPER_KEY}.paramwise_cfg"
            )
        self.paramwise_cfg = dict(paramwise_cfg or {})
        if takes_model(self.optimizer.cls):  # LOMO, Adam-mini: see build/model_argument.py
            check_model_config(self.optimizer, self.paramwise_cfg, cfg, self.wrapper_cls)
        extra = declared_keys(type(self))
        self.custom_optimizers = parse_custom_optimizers(self.paramwise_cfg, (MAIN, MATRIX, FALLBACK))
        main_routes = self._main_routes()
        # A custom_keys entry may set any keyword one of the optimizers takes.
        group_keywords = Keywords(
            names=tuple(dict.fromkeys(n for r in main_routes.values() for n in r.keywords.names)),
            defaults={k: v for r in reversed(list(main_routes.values())) for k, v in r.keywords.defaults.items()},
        )
        for route in main_routes.values():
            check_paramwise_cfg(
                self.paramwise_cfg, group_keywords, route.kwargs, optimizer_key=route.key, extra_keys=extra
            )

    def _main_routes(self) -> dict[str, OptimizerConfig]:
        layout = layout_for(self.optimizer)
        if layout is not None:  # use_muon groups: two parts of one optimizer (build/muon_layout.py)
            return layout.routes(self.optimizer)
        fallback = self.optimizer.fallback
        if fallback is not None:
            return {MATRIX: self.optimizer, FALLBACK: fallback}
        return {MAIN: self.optimizer}

    def _routes(self) -> dict[str, OptimizerConfig]:
        return {**self._main_routes(), **self.custom_optimizers}

    def _refresh_optimizer(self) -> None:
        """Check ``optimizer_cfg`` again if a subclass changed it after ``__init__`` (mmengine lets it)."""
        if self.optimizer_cfg != self._checked_optimizer_cfg:
            self.optimizer = parse_optimizer_cfg(self.optimizer_cfg, f"{WRAPPER_KEY}.optimizer")
            self._checked_optimizer_cfg = dict(self.optimizer_cfg)

    def _plan_params(self, module: nn.Module, prefix: str = "") -> tuple[ParamPlan, dict[str, str]]:
        """visdet's rules for ``module``'s parameters (named under ``prefix``), and why each took its route."""
        route_of: dict[str, str] = {}
        reasons: dict[str, str] = {}
        layout = layout_for(self.optimizer)
        if self.optimizer.is_hybrid or layout is not None:
            decided = layout.route(module) if layout is not None else route_parameters(
                module, flatten_conv=self.optimizer.flatten_conv, fallback_keys=self.optimizer.fallback_keys
            )
            for name, route in decided.items():
                full = f"{prefix}.{name}" if prefix else name
                route_of[full] = route.route
                reasons[full] = route.reason
        bases = {name: cfg.base() for name, cfg in self._routes().items()}
        param_plan = plan_param_groups(module, self.paramwise_cfg, bases, route_of, prefix=prefix)
        for setting in param_plan.settings:
            if setting.route in self.custom_optimizers:
                reasons[setting.name] = f"custom_keys[{setting.route!r}].optimizer"
        return param_plan, reasons

    def add_params(self, params: list[dict[str, Any]], module: nn.Module, prefix: str = "", **kwargs: Any) -> None:
        """Append one group dict per parameter of ``module`` to ``params``: mmengine's hook.

        The groups are those visdet's rules give (``paramwise_cfg``), one per
        parameter as mmengine's are, named under ``prefix`` for ``custom_keys``
        matching. A subclass may override this to append its own group dicts
        (``{'params': [...], 'lr': ...}``, any keys the optimizer takes); the
        constructor then builds from those, still merging equal groups, routing
        each parameter as the config says and choosing ``fused``/``foreach``.
        ``kwargs`` (mmengine's ``is_dcn_module``) are accepted and unused: the
        rules find deformable convolutions themselves.
        """
        plan, _ = self._plan_params(module, prefix)
        for setting in plan.settings:
            group: dict[str, Any] = {"params": [setting.param], "lr": setting.lr}
            if setting.weight_decay is not None:
                group["weight_decay"] = setting.weight_decay
            group.update(setting.overrides)
            params.append(group)

    def _settings_from_add_params(self, model: nn.Module, planned: ParamPlan) -> list[ParamSetting]:
        """A subclass's ``add_params`` groups as settings; each parameter keeps the route the config gives it."""
        groups: list[dict[str, Any]] = []
        self.add_params(groups, model)
        bases = {name: cfg.base() for name, cfg in self._routes().items()}
        return settings_from_groups(groups, f"{type(self).__name__}.add_params", model, planned, bases,
                                    FALLBACK if len(self._main_routes()) > 1 else MAIN)

    def plan(self, model: nn.Module) -> BuildPlan:
        """Decide routes, groups, lr and weight decay for ``model``'s parameters."""
        model = getattr(model, "module", model)
        self._refresh_optimizer()
        routes = self._routes()
        param_plan, reasons = self._plan_params(model)
        if type(self).add_params is not OptimWrapperConstructor.add_params:  # a subclass's own groups
            param_plan.settings = self._settings_from_add_params(model, param_plan)
            kept = {s.name for s in param_plan.settings}
            param_plan.frozen = [name for name in param_plan.frozen if name in kept]  # the log says "in the optimizer"
        layout = layout_for(self.optimizer)
        if layout is not None:
            layout.flag(param_plan.settings)
        if not param_plan.settings:
            raise OptimizerConfigError("the model has no parameters to optimize", f"{WRAPPER_KEY}.optimizer")
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
        if takes_model(self.optimizer.cls):  # built over the model, not planned groups
            return build_model_wrapper(self.optimizer, model, self.wrapper_cfg)
        plan = self.plan(model)
        warn_unused_custom_keys(plan.param_plan)
        log_frozen_and_shared(plan.param_plan)
        layout = layout_for(self.optimizer)
        if layout is not None:  # one optimizer over both parts' use_muon groups
            laid_out = layout.build(plan, self._build_optimizer)
            return OPTIM_WRAPPERS.build(self.wrapper_cfg, default_args=dict(optimizer=laid_out))
        optimizers: dict[str, torch.optim.Optimizer] = {}
        views: dict[torch.Tensor, torch.Tensor] = {}
        for route, cfg in plan.routes.items():
            groups = plan.param_plan.groups(route)
            if not groups:
                continue
            if route == MATRIX:
                groups = _with_matrix_views(groups, views)
            optimizers[route] = self._build_optimizer(cfg, groups, plan, route, model)
        if len(plan.routes) > 1:
            optimizer: torch.optim.Optimizer = HybridOptimizer(optimizers, views=views)
            taken = ", ".join(
                f"{plan.routes[route].name} takes {_count(optimizers.get(route))}"
                + ("" if route in (MAIN, MATRIX, FALLBACK) else f" (custom_keys[{route!r}])")
                for route in plan.routes
            )
            print_log(f"parameter tensors: {taken} (see tools/print_param_groups.py for which and why)",
                      logger="current")
        else:
            optimizer = optimizers[MAIN]
        optimizer = wrap_in_shells(optimizer, self.optimizer, model)  # Lookahead, SAM...: build/nested_optimizer.py
        return OPTIM_WRAPPERS.build(self.wrapper_cfg, default_args=dict(optimizer=optimizer))

    def _build_optimizer(
        self, cfg: OptimizerConfig, groups: list[dict[str, Any]], plan: BuildPlan, route: str, model: Any = None
    ) -> torch.optim.Optimizer:
        kwargs, implementation = plan.kwargs[route], plan.implementations[route]
        build_cfg: dict[str, Any] = {"type": cfg.cls, "params": groups, **kwargs}
        if cfg.inner is not None:
            build_cfg["optimizer_class"] = cfg.inner.cls
        build_cfg = class_wrapper_cfg(cfg, build_cfg, model, len(plan.routes))  # SAM builds its base itself
        try:
            optimizer = OPTIMIZERS.build(build_cfg)
        except OptimizerConfigError:
            raise
        except (TypeError, ValueError, RuntimeError, AssertionError, KeyError, AttributeError, IndexError,
                ArithmeticError) as exc:
            # AssertionError: some packages check arguments with a bare assert (lion-pytorch: lr > 0); KeyError:
            # some look a string option up in a table (heavyball's param_ecc=0.5); AttributeError, IndexError: some
            # use an argument as the structure they expect (heavyball's orig_shapes=0.5); ArithmeticError: divide by it
            # (heavyball's precondition_frequency=0).
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
