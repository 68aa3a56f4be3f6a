"""Check the ``optim_wrapper`` section's own keys, the ones the wrapper (not the optimizer) consumes.

Each check is defined once, here, and called where the value is read: the
constructor checks the whole section before it looks at the model
(:func:`check_wrapper_cfg`), and the wrappers check their own arguments again,
since they are also built without a constructor.
"""
from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from visdet.engine.optim.config.arguments import (
    check_int_at_least,
    check_keywords,
    check_number,
    check_required,
    describe,
    is_number,
)
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import Keywords, accepted_keywords
from visdet.utils.suggestions import suggestion_text

WRAPPER_KEY = "optim_wrapper"
#: Keys of ``optim_wrapper`` that the builder, not the wrapper class, consumes.
BUILDER_KEYS = ("type", "optimizer", "paramwise_cfg", "constructor")
#: ``clip_grad=dict(type='agc', ...)``: the keywords of ``wrappers.agc.adaptive_clip_grad_``.
AGC_KEYWORDS = Keywords(names=("clip_factor", "eps", "norm_type"), defaults={"eps": 1e-3, "norm_type": 2.0},
                        required=("clip_factor",))
#: What AmpOptimWrapper's ``dtype`` may name; float32/float64 mean "no autocast".
AMP_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_clip_grad(clip_grad: Any, key: str = f"{WRAPPER_KEY}.clip_grad") -> None:
    """Refuse a ``clip_grad`` that mmengine would only reject at the first step."""
    if clip_grad is None:
        return
    if not isinstance(clip_grad, Mapping) or not clip_grad:
        raise OptimizerConfigError(
            f"must be a dict like dict(max_norm=35, norm_type=2) or None, got {describe(clip_grad)}", key
        )
    kind = clip_grad.get("type", "norm")
    functions = {"norm": torch.nn.utils.clip_grad_norm_, "value": torch.nn.utils.clip_grad_value_}
    if not isinstance(kind, str) or kind not in (*functions, "agc"):
        raise OptimizerConfigError(
            f"type must be 'norm', 'value' or 'agc' (adaptive, unit-wise), got {kind!r}", f"{key}.type")
    # AGC's function (wrappers/agc.py) is in a higher layer: its keywords are spelt out here.
    keywords = AGC_KEYWORDS if kind == "agc" else accepted_keywords(functions[kind])  # type: ignore[arg-type]
    kwargs = {k: v for k, v in clip_grad.items() if k != "type"}
    check_keywords(kwargs, keywords, f"clip_grad type={kind!r}", key, extra=("type",))
    check_required(kwargs, keywords, f"clip_grad type={kind!r}", key)
    for name in ("clip_factor", "eps"):
        if name in kwargs:
            check_number(kwargs[name], name, f"{key}.{name}")
            if kwargs[name] == 0:
                what = "would zero every gradient" if name == "clip_factor" else "would freeze zero-initialised weights"
                raise OptimizerConfigError(f"{name}=0 {what}; use a positive value", f"{key}.{name}")
    for name in ("max_norm", "clip_value"):
        if name in kwargs:
            check_number(kwargs[name], name, f"{key}.{name}")
            if kwargs[name] == 0:
                raise OptimizerConfigError(f"{name}=0 would zero every gradient; use a positive value", f"{key}.{name}")
    if "norm_type" in kwargs:
        norm_type = kwargs["norm_type"]
        if not (norm_type == "inf" or (is_number(norm_type) and norm_type > 0 and not math.isnan(norm_type))):
            raise OptimizerConfigError(
                f"norm_type must be a positive number or 'inf', got {describe(norm_type)}", f"{key}.norm_type"
            )
    for name in ("error_if_nonfinite", "foreach"):
        if name in kwargs and kwargs[name] is not None and not isinstance(kwargs[name], bool):
            raise OptimizerConfigError(f"{name} must be True or False, got {describe(kwargs[name])}", f"{key}.{name}")


def check_accumulative_counts(value: Any, key: str = f"{WRAPPER_KEY}.accumulative_counts") -> None:
    """Refuse an ``accumulative_counts`` that is not an integer >= 1 (mmengine only ``assert``s it is > 0)."""
    check_int_at_least(value, "accumulative_counts", key, 1)


def check_max_nonfinite_steps(value: Any, key: str = f"{WRAPPER_KEY}.max_nonfinite_steps") -> None:
    """Refuse a ``max_nonfinite_steps`` (skipped steps in a row before training stops) that is not an integer >= 1."""
    check_int_at_least(value, "max_nonfinite_steps", key, 1)


def check_wrapper_cfg(cfg: Mapping[str, Any], wrapper_cls: type) -> None:
    """Refuse keys ``wrapper_cls`` does not take, and bad values of the keys every visdet wrapper reads.

    The constructor calls this on the whole section before it looks at the
    model; the wrappers call the one-key checks again on their own arguments,
    since they are also built without a constructor.
    """
    # ``optimizer`` is passed by the builder; it is not always the first argument
    # (AmpOptimWrapper's first is ``loss_scale``), so it is dropped by name.
    found = accepted_keywords(wrapper_cls, skip_first=False)
    keywords = Keywords(
        names=tuple(n for n in found.names if n != "optimizer"),
        defaults=found.defaults,
        open=found.open,
        open_reason=found.open_reason,
    )
    wrapper_kwargs = {k: v for k, v in cfg.items() if k != "type"}
    check_keywords(wrapper_kwargs, keywords, wrapper_cls.__name__, WRAPPER_KEY, extra=BUILDER_KEYS)
    if "accumulative_counts" in cfg:
        check_accumulative_counts(cfg["accumulative_counts"])
    if "max_nonfinite_steps" in cfg:  # visdet's OptimWrapper/AmpOptimWrapper; others refuse the key above
        check_max_nonfinite_steps(cfg["max_nonfinite_steps"])
    check_clip_grad(cfg.get("clip_grad"))
    own_check = getattr(wrapper_cls, "check_options", None)  # a wrapper's refusals of its own (in-backward's)
    if callable(own_check):
        own_check(cfg)


# --- AmpOptimWrapper's keys ---------------------------------------------------

def _names(values: Any) -> str:
    return ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values)


def parse_amp_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``optim_wrapper.dtype`` as a ``torch.dtype`` (``None``, the device default, stays ``None``)."""
    if dtype is None:
        return None
    key = f"{WRAPPER_KEY}.dtype"
    valid = f"Valid dtypes: {_names(AMP_DTYPES)}, the matching torch.dtype, or None for the device default"
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in AMP_DTYPES:
            raise OptimizerConfigError(f"unknown dtype '{dtype}'{suggestion_text(name, AMP_DTYPES)}\n{valid}", key)
        return getattr(torch, name)
    if isinstance(dtype, torch.dtype):
        if str(dtype).removeprefix("torch.") not in AMP_DTYPES:
            raise OptimizerConfigError(f"dtype {dtype} cannot be used for mixed precision\n{valid}", key)
        return dtype
    raise OptimizerConfigError(f"dtype must be a string or torch.dtype, got {dtype!r}\n{valid}", key)


def check_use_fsdp(use_fsdp: Any) -> None:
    """Refuse a ``use_fsdp`` that is not a bool."""
    if not isinstance(use_fsdp, bool):
        raise OptimizerConfigError(f"use_fsdp must be True or False, got {use_fsdp!r}", f"{WRAPPER_KEY}.use_fsdp")


def _check_positive(value: Any, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise OptimizerConfigError(f"{what} must be a positive finite number, got {value!r}", key)
    return float(value)


def parse_loss_scale(loss_scale: Any, scaler_type: type) -> tuple[dict[str, Any], float | None]:
    """``optim_wrapper.loss_scale`` as ``scaler_type`` keyword arguments and the static scale (``None``: dynamic)."""
    key = f"{WRAPPER_KEY}.loss_scale"
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
