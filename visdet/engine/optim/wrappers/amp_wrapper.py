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

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.config.wrapper_checks import (
    AMP_DTYPES,
    WRAPPER_KEY,
    check_use_fsdp,
    parse_amp_dtype,
    parse_loss_scale,
)

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)

from mmengine.logging import print_log
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper
from visdet.registry import OPTIM_WRAPPERS

# Dtypes torch.autocast can cast to; float32/float64 mean "no autocast".
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


def _params_device_type(optimizer: torch.optim.Optimizer) -> str:
    """The one device type all of ``optimizer``'s parameters are on."""
    types = sorted({p.device.type for group in optimizer.param_groups for p in group["params"]})
    if len(types) > 1:
        raise OptimizerConfigError(
            f"the optimizer's parameters are on several device types ({', '.join(types)}); "
            "AmpOptimWrapper autocasts for one device type. Move the whole model to one device "
            "before building the optimizer wrapper", f"{WRAPPER_KEY}.optimizer")
    device_type = types[0] if types else "cpu"
    if not torch.amp.is_autocast_available(device_type):
        raise OptimizerConfigError(
            f"the optimizer's parameters are on '{device_type}', where torch has no autocast; "
            "move the model to 'cpu' or 'cuda' before building the optimizer wrapper", f"{WRAPPER_KEY}.optimizer")
    return device_type


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

    valid_dtypes = AMP_DTYPES

    def __init__(
        self,
        loss_scale: str | float | dict | None = None,
        dtype: str | torch.dtype | None = None,
        use_fsdp: bool = False,
        **kwargs: Any,
    ) -> None:
        # AmpOptimWrapper's own keys are checked here, where they are read; accumulative_counts, clip_grad
        # and max_nonfinite_steps by OptimWrapper.__init__ (the constructor checks those before the model).
        cast_dtype = parse_amp_dtype(dtype)
        check_use_fsdp(use_fsdp)
        scaler_type = self._scaler_type(use_fsdp)
        scaler_kwargs, static_scale = parse_loss_scale(loss_scale, scaler_type)
        optimizer = kwargs.get("optimizer")
        if not hasattr(optimizer, "param_groups"):
            raise OptimizerConfigError(
                f"optimizer must be a built torch.optim.Optimizer, got {type(optimizer).__name__}",
                f"{WRAPPER_KEY}.optimizer")
        device_type = _params_device_type(optimizer)
        if cast_dtype is None:
            cast_dtype = torch.bfloat16 if device_type == "cpu" else torch.float16
        if device_type == "cuda" and cast_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise OptimizerConfigError(
                "this CUDA device does not support bfloat16; use dtype='float16'", f"{WRAPPER_KEY}.dtype")
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
