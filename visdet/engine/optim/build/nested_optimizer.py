"""Build the wrappers a nested optimizer config puts around the optimizer it wraps.

``config/nested_optimizer.py`` turns ``dict(type='Lookahead', optimizer=dict(type='AdamW'))``
into AdamW's config carrying Lookahead as a :class:`~visdet.engine.optim.config.nested_optimizer.Shell`.
The constructor plans and builds AdamW as for any config (paramwise groups,
fused/foreach); then:

* a wrapper that builds its base optimizer from a class (SAM, WSAM, LookSAM,
  FriendlySAM: ``base_optimizer(self.param_groups, **kwargs)``) is built
  *instead of* the inner one, from the planned groups, the inner class and the
  inner keywords (:func:`class_wrapper_cfg`);
* every other wrapper gets the built instance (:func:`wrap_in_shells`), innermost
  first, so ``Lookahead(SAM(AdamW))`` nests as written.

``build_nested`` does both for a parameter list (the registry contract and
scripts that build an optimizer without the constructor).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.config.nested_optimizer import Shell
from visdet.engine.optim.config.optimizer_config import OptimizerConfig, parse_optimizer_cfg
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.registry import OPTIMIZERS

#: Attributes through which a wrapper exposes the optimizer it wraps.
INNER_ATTRIBUTES = ("optimizer", "base_optimizer")


def optimizer_chain(optimizer: torch.optim.Optimizer) -> Iterator[torch.optim.Optimizer]:
    """``optimizer`` and each one it wraps, outermost first (Lookahead, then the SAM inside it, then SGD)."""
    seen: set[int] = set()
    current: Any = optimizer
    while isinstance(current, torch.optim.Optimizer) and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = next(
            (inner for attr in INNER_ATTRIBUTES
             if isinstance(inner := getattr(current, attr, None), torch.optim.Optimizer)),
            None,
        )


def _model_argument(shell: Shell, model: nn.Module | None) -> dict[str, Any]:
    if not shell.takes_model:
        return {}
    if model is None:
        raise OptimizerConfigError(f"{shell.name} takes the model; build it through the optim-wrapper constructor",
                                   f"{shell.key}.type")
    return {"model": getattr(model, "module", model)}  # the detector itself, not its DDP wrapper


def class_wrapper_cfg(cfg: OptimizerConfig, build_cfg: dict[str, Any], model: nn.Module | None,
                      routes: int = 1) -> dict[str, Any]:
    """The build of a route whose innermost wrapper builds its base optimizer from a class (SAM); else unchanged.

    Args:
        cfg: The route's (innermost) optimizer config.
        build_cfg: ``{'type': cls, 'params': groups, **inner keywords}`` as the constructor would build it.
        model: The model, for wrappers that take it (WSAM).
        routes: How many optimizers the constructor builds (Muon's pair, per-module optimizers).
    """
    if not cfg.shells or not cfg.shells[0].takes_class:
        return build_cfg
    shell = cfg.shells[0]
    if routes > 1:
        raise OptimizerConfigError(
            f"{shell.name} builds its {shell.keyword} itself from one class for all parameters, so the config "
            "cannot also give per-module optimizers (custom_keys[...].optimizer)", f"{shell.key}.{shell.keyword}")
    inner = {k: v for k, v in build_cfg.items() if k not in ("type", "params")}
    return {"type": shell.cls, "params": build_cfg["params"], shell.keyword: build_cfg["type"],
            **_model_argument(shell, model), **inner, **shell.kwargs}


def wrap_in_shells(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig,
                   model: nn.Module | None = None) -> torch.optim.Optimizer:
    """``optimizer`` inside the wrappers ``cfg`` carries, innermost first (a class-taking one is built already)."""
    for index, shell in enumerate(cfg.shells):
        if index == 0 and shell.takes_class:
            continue  # built by class_wrapper_cfg around the route
        build_cfg: dict[str, Any] = {"type": shell.cls, shell.keyword: optimizer, **_model_argument(shell, model),
                                     **shell.kwargs}
        if shell.takes_params:
            build_cfg["params"] = optimizer.param_groups
        optimizer = _build(build_cfg, shell.name, shell.key)
    return optimizer


def _build(build_cfg: dict[str, Any], name: str, key: str) -> torch.optim.Optimizer:
    try:
        return OPTIMIZERS.build(build_cfg)
    except OptimizerConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, AssertionError, NotImplementedError) as exc:
        raise OptimizerConfigError(f"{name} refused its arguments: {exc or type(exc).__name__}", key) from exc


def build_nested(params: Iterable[Any], cfg: Mapping[str, Any], model: nn.Module | None = None,
                 key: str = "optim_wrapper.optimizer") -> torch.optim.Optimizer:
    """Build a (possibly nested) optimizer config over ``params`` through visdet's checks and registry.

    ``build_nested(model.parameters(), dict(type='Lookahead', k=5, optimizer=dict(type='SGD', lr=0.1)))``.
    The constructor does the same with planned groups; this is for a parameter list.
    """
    parsed = parse_optimizer_cfg(cfg, key)
    if parsed.is_hybrid or parsed.inner is not None:
        raise OptimizerConfigError(f"{parsed.name} needs the optim-wrapper constructor (it splits parameters)", key)
    build_cfg = class_wrapper_cfg(parsed, {"type": parsed.cls, "params": list(params), **parsed.kwargs}, model)
    optimizer = _build(build_cfg, parsed.shells[0].name if build_cfg["type"] is not parsed.cls else parsed.name,
                       parsed.key)
    return wrap_in_shells(optimizer, parsed, model)
