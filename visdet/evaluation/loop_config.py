"""``val_cfg``/``test_cfg`` checked before training, so a validation switch cannot fail an epoch in.

mmengine builds the validation loop when training starts and runs it only
after the first epoch; a misspelt key (``fp61=True``) is a ``TypeError`` then,
and ``fp16=True`` on a device mmengine's ``autocast`` does not support
(Apple's ``mps``, ...) a ``ValueError`` from inside the first validation.
:func:`check_eval_loops` compares each loop config with the signature of the
loop class it names (mmengine's ``ValLoop``/``TestLoop``, or visdet's
registered ones) and refuses ``fp16=True`` where it cannot run. ``fp16=True``
itself is supported: mmengine autocasts to bfloat16 on the CPU and float16 on
CUDA, and :class:`~visdet.evaluation.CocoMetric` reads predictions of either.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from visdet.errors import ConfigError

#: Arguments the Runner passes to a validation/test loop itself (from ``val_dataloader``, ``val_evaluator``...).
RUNNER_PASSED = ("runner", "dataloader", "evaluator")
#: Devices mmengine 0.10's ``autocast`` runs on (it raises for any other).
AUTOCAST_DEVICES = ("cuda", "cpu", "npu", "mlu", "musa")


def check_eval_loops(cfg: Mapping[str, Any], training: bool = True) -> None:
    """Check ``test_cfg`` (and, when training, ``val_cfg``) against its loop class and this device.

    Raises:
        ConfigError: an unknown loop type or argument, an argument the Runner
            sets itself, a non-bool ``fp16``, or ``fp16=True`` on a device
            where mmengine cannot autocast.
    """
    sections = (("val_cfg", "ValLoop"), ("test_cfg", "TestLoop")) if training else (("test_cfg", "TestLoop"),)
    for key, default_type in sections:
        loop = cfg.get(key)
        if not loop:  # None or {}: mmengine then runs no such loop (or its default one)
            continue
        if not isinstance(loop, Mapping):
            raise ConfigError(f"expected a dict such as dict(type='{default_type}'), got {type(loop).__name__}", key)
        _check_arguments(loop, _loop_class(loop, key, default_type), key)
        if "fp16" in loop:
            _check_fp16(loop["fp16"], f"{key}.fp16")


def _loop_class(loop: Mapping[str, Any], key: str, default_type: str) -> Any:
    from mmengine.registry import DefaultScope

    from visdet.utils.suggestions import suggestion_text
    from visdet.registry import LOOPS, registered_names

    loop_type = loop.get("type", default_type)
    if not isinstance(loop_type, str):
        return loop_type  # a class given directly in a Python config
    with DefaultScope.overwrite_default_scope("visdet"):
        found = LOOPS.get(loop_type)
    if found is None:
        names = sorted(registered_names(LOOPS))
        raise ConfigError(f"unknown loop type '{loop_type}'{suggestion_text(loop_type, names)}", f"{key}.type")
    return found


def _check_arguments(loop: Mapping[str, Any], cls: Any, key: str) -> None:
    from visdet.utils.suggestions import suggestion_text
    from visdet.utils.signatures import accepted_keywords

    try:
        keywords = accepted_keywords(cls, skip_first=False)
    except (TypeError, ValueError):  # no inspectable signature: the build reports it
        return
    for name in loop:
        if name in RUNNER_PASSED:
            source = {"dataloader": key.replace("_cfg", "_dataloader"),
                      "evaluator": key.replace("_cfg", "_evaluator")}.get(name, "the Runner")
            raise ConfigError(f"'{name}' is set by the Runner (from {source}), not in {key}", f"{key}.{name}")
        if name != "type" and not keywords.open and name not in keywords.names:
            valid = [n for n in keywords.names if n not in ("self", *RUNNER_PASSED)]
            raise ConfigError(f"{getattr(cls, '__name__', cls)} has no argument '{name}'"
                              f"{suggestion_text(name, valid)}; valid arguments: {', '.join(valid) or '(none)'}",
                              f"{key}.{name}")


def _check_fp16(value: Any, key: str) -> None:
    """``fp16`` is a bool, and mmengine's autocast must run on the device the loop will use."""
    if not isinstance(value, bool):
        raise ConfigError(f"must be True or False, got {value!r}", key)
    if not value:
        return
    from mmengine.device import get_device

    device = get_device()
    if device not in AUTOCAST_DEVICES:
        raise ConfigError(f"reduced-precision evaluation needs mmengine's autocast, which does not run on this "
                          f"machine's '{device}' device (only on {', '.join(AUTOCAST_DEVICES)}); set it to False",
                          key)
    if device == "cuda" and torch.get_autocast_dtype("cuda") == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("autocast is set to bfloat16, which this CUDA device does not support; set it to False "
                          "or switch torch's autocast dtype to float16", key)
