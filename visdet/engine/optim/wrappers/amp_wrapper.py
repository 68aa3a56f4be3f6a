"""Mixed-precision optimizer wrapper that also runs on CPU.

mmengine 0.10's ``AmpOptimWrapper`` asserts a CUDA/NPU/MLU/MUSA device in
``__init__``, so an AMP config cannot even be built on a CPU machine; it
creates a ``GradScaler`` for bfloat16 too, where none is needed; and it checks
its arguments with ``assert``. This one takes the device from the optimizer's
parameters, autocasts to bfloat16 on CPU and float16 on CUDA by default, uses a
``GradScaler`` only for float16, and reports config mistakes as
``OptimizerConfigError``. It is registered as ``AmpOptimWrapper`` in visdet's
``OPTIM_WRAPPERS``, so configs with ``default_scope='visdet'`` get it.

It is built on visdet's ``OptimWrapper``: without a ``GradScaler`` (bfloat16,
float32) a step with a non-finite loss or gradients is skipped and counted,
and ``max_nonfinite_steps`` in a row stop training; with float16 the scaler
does that job (it skips the step and lowers the scale), so the guard is off.
"""
from __future__ import annotations

import inspect
import logging
import math
import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from visdet.engine.optim.errors import OptimizerConfigError

from visdet.utils.suggestions import suggestion_text
from visdet.engine.optim.config.arguments import check_int_at_least
from visdet.engine.optim.config.wrapper_checks import check_clip_grad

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)

from mmengine.logging import print_log
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper
from visdet.registry import OPTIM_WRAPPERS

KEY = "optim_wrapper"
VALID_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Dtypes torch.autocast can cast to; float32/float64 mean "no autocast".
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


def _names(values: Any) -> str:
    return ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values)


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``dtype`` as a ``torch.dtype`` (``None`` stays ``None``)."""
    if dtype is None:
        return None
    valid = f"Valid dtypes: {_names(VALID_DTYPES)}, the matching torch.dtype, or None for the device default"
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in VALID_DTYPES:
            raise OptimizerConfigError(
                f"unknown dtype '{dtype}'{suggestion_text(name, VALID_DTYPES)}\n{valid}", f"{KEY}.dtype")
        return getattr(torch, name)
    if isinstance(dtype, torch.dtype):
        if str(dtype).removeprefix("torch.") not in VALID_DTYPES:
            raise OptimizerConfigError(f"dtype {dtype} cannot be used for mixed precision\n{valid}", f"{KEY}.dtype")
        return dtype
    raise OptimizerConfigError(f"dtype must be a string or torch.dtype, got {dtype!r}\n{valid}", f"{KEY}.dtype")


def _params_device_type(optimizer: torch.optim.Optimizer) -> str:
    """The one device type all of ``optimizer``'s parameters are on."""
    types = sorted({p.device.type for group in optimizer.param_groups for p in group["params"]})
    if len(types) > 1:
        raise OptimizerConfigError(
            f"the optimizer's parameters are on several device types ({', '.join(types)}); "
            "AmpOptimWrapper autocasts for one device type. Move the whole model to one device "
            "before building the optimizer wrapper", f"{KEY}.optimizer")
    device_type = types[0] if types else "cpu"
    if not torch.amp.is_autocast_available(device_type):
        raise OptimizerConfigError(
            f"the optimizer's parameters are on '{device_type}', where torch has no autocast; "
            "move the model to 'cpu' or 'cuda' before building the optimizer wrapper", f"{KEY}.optimizer")
    return device_type


def _check_positive(value: Any, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise OptimizerConfigError(f"{what} must be a positive finite number, got {value!r}", key)
    return float(value)


def _scaler_kwargs(loss_scale: Any, scaler_type: type) -> tuple[dict[str, Any], float | None]:
    """GradScaler keyword arguments and the static scale (``None`` when dynamic)."""
    key = f"{KEY}.loss_scale"
    if loss_scale is None or loss_scale == "dynamic":
        return {}, None
    if isinstance(loss_scale, numbers.Real) and not isinstance(loss_scale, bool):
        scale = _check_positive(loss_scale, key, "a static loss_scale")
        return {"init_scale": scale}, scale
    if isinstance(loss_scale, Mapping):
        accepted = [n for n in inspect.signature(scaler_type.__init__).parameters if n not in ("self", "device")]
        for name in loss_scale:
            if name == "device":
                raise OptimizerConfigError(
                    "'device' cannot be set in loss_scale: it is the device type of the optimizer's "
                    f"parameters. Valid keys: {', '.join(accepted)}", key)
            if name not in accepted:
                raise OptimizerConfigError(
                    f"{scaler_type.__name__} got an unknown argument '{name}'"
                    f"{suggestion_text(str(name), accepted)}\nValid keys: {', '.join(accepted)}", key)
        if "init_scale" in loss_scale:
            _check_positive(loss_scale["init_scale"], f"{key}.init_scale", "init_scale")
        _check_scaler_factors(loss_scale, key)
        return dict(loss_scale), None
    raise OptimizerConfigError(
        f"loss_scale must be 'dynamic', a positive number (static scale) or a dict of "
        f"{scaler_type.__name__} arguments, got {loss_scale!r}", key)


def _check_scaler_factors(loss_scale: Mapping[str, Any], key: str) -> None:
    """What GradScaler checks with AssertionError, or not at all, as config errors."""
    if "growth_factor" in loss_scale:
        growth = _check_positive(loss_scale["growth_factor"], f"{key}.growth_factor", "growth_factor")
        if growth <= 1.0:
            raise OptimizerConfigError(
                f"growth_factor must be > 1 (the scale grows by it), got {growth:g}; the default is 2.0",
                f"{key}.growth_factor")
    if "backoff_factor" in loss_scale:
        backoff = _check_positive(loss_scale["backoff_factor"], f"{key}.backoff_factor", "backoff_factor")
        if backoff >= 1.0:
            raise OptimizerConfigError(
                f"backoff_factor must be in (0, 1) (the scale shrinks by it), got {backoff:g}; the default is 0.5",
                f"{key}.backoff_factor")
    if "growth_interval" in loss_scale:
        check_int_at_least(loss_scale["growth_interval"], "growth_interval", f"{key}.growth_interval", 1)
    if "enabled" in loss_scale and not isinstance(loss_scale["enabled"], bool):
        raise OptimizerConfigError(f"enabled must be True or False, got {loss_scale['enabled']!r}", f"{key}.enabled")


def _check_wrapper_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check what OptimWrapper would only ``assert``; returns kwargs with ``clip_grad`` copied."""
    check_int_at_least(kwargs.get("accumulative_counts", 1), "accumulative_counts", f"{KEY}.accumulative_counts", 1)
    check_clip_grad(kwargs.get("clip_grad"), f"{KEY}.clip_grad")
    if kwargs.get("clip_grad") is not None:
        kwargs = {**kwargs, "clip_grad": dict(kwargs["clip_grad"])}  # OptimWrapper pops 'type' from it
    return kwargs


@OPTIM_WRAPPERS.register_module(name="AmpOptimWrapper", force=True)  # force: survives re-import
class AmpOptimWrapper(OptimWrapper):
    """Automatic mixed precision on whatever device the parameters are on.

    Inside :meth:`optim_context` the forward pass runs under
    ``torch.autocast(device_type, cast_dtype)``. For float16 a ``GradScaler``
    scales the loss, unscales before gradient clipping and skips steps whose
    gradients are not finite; bfloat16, float32 and float64 need no scaler and
    behave as visdet's plain :class:`OptimWrapper`, including its guard against
    non-finite losses and gradients (``max_nonfinite_steps``).

    Args:
        loss_scale: ``'dynamic'`` (or ``None``, the default) for a
            dynamically adjusted scale, a positive number for a static scale,
            or a dict of ``GradScaler`` arguments (``init_scale``, ``growth_factor``,
            ``backoff_factor``, ``growth_interval``, ``enabled``). Ignored,
            with an INFO log, when no scaler is used.
        dtype: ``'float16'``, ``'bfloat16'``, ``'float32'``, ``'float64'`` or
            the torch dtype. ``None`` means bfloat16 on CPU and float16 on
            CUDA and other accelerators. float32/float64 disable autocast.
        use_fsdp: Use ``ShardedGradScaler``, needed with
            ``FullyShardedDataParallel``.
        **kwargs: Passed to :class:`OptimWrapper` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``, ``max_nonfinite_steps``).

    Attributes:
        device_type: The device type autocast runs for, taken from the
            optimizer's parameters when the wrapper is built.
        cast_dtype: The dtype autocast casts to.
        loss_scaler: The ``GradScaler``, or ``None`` when none is used.
    """

    valid_dtypes = VALID_DTYPES

    def __init__(
        self,
        loss_scale: str | float | dict | None = None,
        dtype: str | torch.dtype | None = None,
        use_fsdp: bool = False,
        **kwargs: Any,
    ) -> None:
        cast_dtype = _parse_dtype(dtype)
        if not isinstance(use_fsdp, bool):
            raise OptimizerConfigError(f"use_fsdp must be True or False, got {use_fsdp!r}", f"{KEY}.use_fsdp")
        scaler_type = self._scaler_type(use_fsdp)
        scaler_kwargs, static_scale = _scaler_kwargs(loss_scale, scaler_type)
        kwargs = _check_wrapper_kwargs(kwargs)
        optimizer = kwargs.get("optimizer")
        if not hasattr(optimizer, "param_groups"):
            raise OptimizerConfigError(
                f"optimizer must be a built torch.optim.Optimizer, got {type(optimizer).__name__}", f"{KEY}.optimizer")
        device_type = _params_device_type(optimizer)
        if cast_dtype is None:
            cast_dtype = torch.bfloat16 if device_type == "cpu" else torch.float16
        if device_type == "cuda" and cast_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise OptimizerConfigError(
                "this CUDA device does not support bfloat16; use dtype='float16'", f"{KEY}.dtype")
        super().__init__(**kwargs)

        self.device_type = device_type
        self.cast_dtype = cast_dtype
        self._autocast_enabled = cast_dtype in AUTOCAST_DTYPES
        self._scale_update_param = static_scale
        self.loss_scaler: Any = None
        if cast_dtype == torch.float16:
            self.loss_scaler = scaler_type(device=device_type, **scaler_kwargs)
        elif loss_scale is not None:
            print_log(
                f"AmpOptimWrapper: loss_scale={loss_scale!r} is ignored with dtype {cast_dtype}: only float16, "
                "whose small exponent range lets gradients underflow, needs a GradScaler",
                logger="current", level=logging.INFO)

    def _guards_nonfinite(self) -> bool:
        """Only without a scaler: a ``GradScaler`` already skips non-finite steps and lowers the scale."""
        return self.loss_scaler is None

    @staticmethod
    def _scaler_type(use_fsdp: bool) -> type:
        if use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            return ShardedGradScaler
        return torch.amp.GradScaler

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate ``loss``, scaled by the loss scaler if there is one.

        Args:
            loss: The loss of the current iteration.
            **kwargs: Passed to :meth:`torch.Tensor.backward`.
        """
        if self.loss_scaler is None:
            super().backward(loss, **kwargs)
            return
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        """Clip gradients if configured, then update the parameters.

        With a scaler, gradients are unscaled before clipping, a step with
        non-finite gradients is skipped and the scale is updated.

        Args:
            **kwargs: Passed to :meth:`torch.optim.Optimizer.step`.
        """
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict:
        """The optimizer's state dict, plus ``'loss_scaler'`` when a scaler is used."""
        state_dict = super().state_dict()
        if self.loss_scaler is not None:
            state_dict["loss_scaler"] = self.loss_scaler.state_dict()
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict saved with or without a ``'loss_scaler'`` entry.

        Args:
            state_dict: The optimizer state, optionally with ``'loss_scaler'``
                and ``'base_param_settings'``. It is not modified.
        """
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None:
            if self.loss_scaler is not None:
                self.loss_scaler.load_state_dict(scaler_state)
            else:
                print_log(
                    f"AmpOptimWrapper: the loaded state has a 'loss_scaler' entry; it is dropped because "
                    f"dtype {self.cast_dtype} uses no GradScaler",
                    logger="current", level=logging.INFO)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Autocast to :attr:`cast_dtype`, inside OptimWrapper's no-sync context.

        Args:
            model: The model being trained.
        """
        with super().optim_context(model), torch.autocast(
            device_type=self.device_type, dtype=self.cast_dtype, enabled=self._autocast_enabled
        ):
            yield
