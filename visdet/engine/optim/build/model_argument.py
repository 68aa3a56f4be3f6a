"""Optimizers that take the model instead of its parameters: their config checks and their build.

LOMO, AdaLOMO (pytorch-optimizer, lomo-optim) and Adam-mini are written
``Optimizer(model, lr=...)``: they walk ``model.named_parameters()``
themselves (LOMO registers a gradient hook on each parameter and updates it
inside backward; Adam-mini makes one group per named parameter and shares
second moments by name). Whether a class is one of them is read from its
``__init__``: its first argument is called ``model`` (the catalogue's
``Need.MODEL`` records the same fact for the listing). The constructor then
passes the model instead of planned parameter groups.

What of visdet's parameter handling still applies:

* frozen parameters (``requires_grad=False``) are left alone by all of them
  (no hook, no group), so ``frozen_stages`` works;
* ``paramwise_cfg`` (multipliers, ``custom_keys``, layer decay) cannot: the
  optimizer builds its own groups (LOMO has one lr for all), so any key but
  ``bypass_duplicate`` is refused, naming the key;
* for the optimizers that update inside backward (they have
  ``fused_backward``, driven by ``wrappers/drivers/fused_backward.py``):
  ``clip_grad`` is handed to the optimizer's own ``clip_grad_norm`` /
  ``clip_grad_value`` (the wrapper never sees gradients to clip), and
  ``accumulative_counts > 1``, AMP's loss scaler and several processes are
  refused: each needs the gradients to wait for something before the update,
  and these optimizers apply them the moment they exist.

Adam-mini's ``num_embeds`` / ``num_heads`` only shape its attention-block
layout (parameter names with ``q_proj``/``k_proj``); a CNN detector has none,
so their defaults are harmless and every tensor is one block per output row.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.config.optimizer_config import OptimizerConfig
from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.registry import OPTIMIZERS

#: paramwise_cfg keys that do not change per-parameter settings, so they make sense here too.
HARMLESS_PARAMWISE = ("bypass_duplicate",)


def takes_model(cls: Any) -> bool:
    """Whether ``cls(...)`` takes the model itself: the first argument of its ``__init__`` is ``model``."""
    if not isinstance(cls, type):
        return False
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[0].name == "model"


def updates_in_backward(cls_or_optimizer: Any) -> bool:
    """Whether it applies its update inside backward: it has ``fused_backward(loss, lr)`` (LOMO's API)."""
    return callable(getattr(cls_or_optimizer, "fused_backward", None))


def check_model_config(
    optimizer: OptimizerConfig, paramwise_cfg: Mapping[str, Any], wrapper_cfg: Mapping[str, Any], wrapper_cls: type
) -> None:
    """Refuse, at config time, what a model-taking optimizer cannot honour; the message names the key."""
    for key in paramwise_cfg:
        if key not in HARMLESS_PARAMWISE:
            raise OptimizerConfigError(
                f"{optimizer.name} takes the model and builds its own parameter groups, so paramwise rules "
                "cannot apply to it (frozen parameters, requires_grad=False, are left alone); remove "
                f"{key!r} or use an optimizer that takes parameters", f"{WRAPPER_KEY}.paramwise_cfg.{key}")
    if not updates_in_backward(optimizer.cls):
        return
    counts = wrapper_cfg.get("accumulative_counts", 1)
    if counts != 1:
        raise OptimizerConfigError(
            f"{optimizer.name} applies each gradient inside backward, so gradients cannot be accumulated over "
            "micro-batches; remove accumulative_counts (or use a larger batch)", f"{WRAPPER_KEY}.accumulative_counts")
    if not hasattr(wrapper_cls, "drive_train_step") or _is_amp(wrapper_cls):
        raise OptimizerConfigError(
            f"{optimizer.name} applies its update inside backward, which only visdet's OptimWrapper drives "
            f"(AMP's loss scaler and {wrapper_cls.__name__}'s own step would be bypassed); use type='OptimWrapper'",
            f"{WRAPPER_KEY}.type")
    fused_clip_kwargs(optimizer, wrapper_cfg.get("clip_grad"))


def fused_clip_kwargs(optimizer: OptimizerConfig, clip_grad: Mapping[str, Any] | None) -> dict[str, Any]:
    """``optim_wrapper.clip_grad`` as the fused optimizer's own keywords (``clip_grad_norm``/``clip_grad_value``)."""
    if not clip_grad:
        return {}
    key = f"{WRAPPER_KEY}.clip_grad"
    kind = clip_grad.get("type", "norm")
    own = {"norm": "clip_grad_norm", "value": "clip_grad_value"}.get(kind)
    if own is None or own not in optimizer.keywords.names:
        raise OptimizerConfigError(
            f"{optimizer.name} clips inside backward and supports only clip_grad=dict(max_norm=...) or "
            f"dict(type='value', clip_value=...); {kind!r} clipping needs the whole gradient before the update",
            f"{key}.type")
    if own in optimizer.kwargs:
        raise OptimizerConfigError(
            f"{optimizer.name}: clipping is set twice (optimizer.{own} and clip_grad); keep one", key)
    if kind == "norm":
        if clip_grad.get("norm_type", 2) not in (2, 2.0):
            raise OptimizerConfigError(
                f"{optimizer.name} clips by the 2-norm only; remove norm_type or set norm_type=2", f"{key}.norm_type")
        extra = sorted(set(clip_grad) - {"type", "max_norm", "norm_type"})
        value = clip_grad["max_norm"]
    else:
        extra = sorted(set(clip_grad) - {"type", "clip_value"})
        value = clip_grad["clip_value"]
    if extra:
        raise OptimizerConfigError(f"{optimizer.name}'s own clipping has no {extra[0]!r}", f"{key}.{extra[0]}")
    return {own: float(value)}


def build_model_wrapper(optimizer: OptimizerConfig, model: nn.Module, wrapper_cfg: Mapping[str, Any]) -> Any:
    """The optim wrapper around ``optimizer`` built over ``model`` (the module itself, not a DDP wrapper)."""
    from visdet.registry import OPTIM_WRAPPERS

    module = getattr(model, "module", model)
    kwargs = dict(optimizer.kwargs)
    wrapper_cfg = dict(wrapper_cfg)
    if updates_in_backward(optimizer.cls):
        if _world_size() > 1:
            raise OptimizerConfigError(
                f"{optimizer.name} updates each parameter inside backward from this process's gradient, before "
                "DDP averages it, so the processes would drift apart; train it in one process",
                f"{WRAPPER_KEY}.optimizer.type")
        kwargs.update(fused_clip_kwargs(optimizer, wrapper_cfg.pop("clip_grad", None)))
    try:
        built = build_with_model(optimizer.cls, module, **kwargs)
    except OptimizerConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise OptimizerConfigError(f"{optimizer.name} refused its arguments: {exc}", optimizer.key) from exc
    return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=built))


def build_with_model(optimizer_type: Any, model: nn.Module, **kwargs: Any) -> torch.optim.Optimizer:
    """``optimizer_type`` (a registry name or class) built over ``model``, ready to step any parameter shape.

    Also for other builds that must hand an optimizer the model (GSAM, WSAM).
    """
    built = OPTIMIZERS.build({"type": optimizer_type, "model": model, **kwargs})
    _factor_beyond_two_dims(built, model)
    return built


@torch.no_grad()
def _factor_beyond_two_dims(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Give factored second moments (``exp_avg_sq_row``/``_col`` by parameter name) Adafactor's N-D shapes.

    pytorch-optimizer 4.1's AdaLOMO (and lomo-optim's AdaLomo) allocate a row of
    ``shape[0]`` and a column of ``shape[1]`` for every tensor of more than one
    dimension, but average the squared gradient over its last and second-last
    dimensions; for a conv kernel (4-D) the first update fails with "output
    with shape [O] doesn't match the broadcast shape [O, I, kh]". Their update
    is right for the shapes transformers' Adafactor uses (row ``shape[:-1]``,
    column ``shape[:-2] + shape[-1:]``, equal to theirs for matrices), so the
    states of the tensors beyond two dimensions are reallocated that way,
    before any step; no library offers the fix (pytorch-optimizer up to 4.1).
    """
    rows, cols = getattr(optimizer, "exp_avg_sq_row", None), getattr(optimizer, "exp_avg_sq_col", None)
    if not isinstance(rows, dict) or not isinstance(cols, dict):
        return
    for name, param in model.named_parameters():
        if param.ndim > 2 and name in rows and name in cols and rows[name].shape != param.shape[:-1]:
            rows[name] = rows[name].new_zeros(param.shape[:-1])
            cols[name] = cols[name].new_zeros(param.shape[:-2] + param.shape[-1:])


def _is_amp(wrapper_cls: type) -> bool:
    """A wrapper that autocasts and scales the loss (it takes ``loss_scale``: mmengine's and visdet's AMP)."""
    try:
        return "loss_scale" in inspect.signature(wrapper_cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
