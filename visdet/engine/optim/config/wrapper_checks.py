"""Check the ``optim_wrapper`` section's own keys, the ones the wrapper (not the optimizer) consumes."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from visdet.engine.optim.config.arguments import check_keywords, check_number, check_required, describe, is_number
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import accepted_keywords


def check_clip_grad(clip_grad: Any, key: str = "optim_wrapper.clip_grad") -> None:
    """Refuse a ``clip_grad`` that mmengine would only reject at the first step."""
    if clip_grad is None:
        return
    if not isinstance(clip_grad, Mapping) or not clip_grad:
        raise OptimizerConfigError(
            f"must be a dict like dict(max_norm=35, norm_type=2) or None, got {describe(clip_grad)}", key
        )
    kind = clip_grad.get("type", "norm")
    functions = {"norm": torch.nn.utils.clip_grad_norm_, "value": torch.nn.utils.clip_grad_value_}
    if not isinstance(kind, str) or kind not in functions:
        raise OptimizerConfigError(f"type must be 'norm' or 'value', got {kind!r}", f"{key}.type")
    keywords = accepted_keywords(functions[kind])  # type: ignore[arg-type]
    kwargs = {k: v for k, v in clip_grad.items() if k != "type"}
    check_keywords(kwargs, keywords, f"clip_grad type={kind!r}", key, extra=("type",))
    check_required(kwargs, keywords, f"clip_grad type={kind!r}", key)
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
