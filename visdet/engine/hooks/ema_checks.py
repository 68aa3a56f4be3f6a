"""Checks of an ``EMAHook`` config, made at check time (preflight) and again when the hook is built.

mmengine's ``EMAHook`` passes every unknown keyword on to the averaged model
and checks its own with ``assert``: a misspelt ``ema_type`` is a ``KeyError``
from the Runner's build, ``momentum=1.5`` an ``AssertionError``, and
``momentum=0.9998`` (the optimizer's sense, the opposite of mmengine's) only a
log line while the "average" follows the raw weights.
Here each mistake is one ``ConfigError`` naming the key, and an EMA on top of a
schedule-free optimizer (which already averages its iterates) is a warning.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from visdet.errors import ConfigError
from visdet.utils.signatures import accepted_keywords
from visdet.utils.suggestions import suggestion_text

#: The hook's own keywords (the rest go to the averaged model); ``priority`` is the Runner's.
HOOK_KEYS = ("type", "ema_type", "strict_load", "begin_iter", "begin_epoch", "test_weights", "priority")
TEST_WEIGHTS = ("ema", "raw")
#: Scopes MMDetection/MMEngine configs prefix to names visdet registers too (``mmdet.ExpMomentumEMA``).
_FOREIGN_SCOPES = ("mmdet.", "mmengine.", "mmyolo.")


def averaged_model_names() -> list[str]:
    """Every name in visdet's MODELS scope (its own and mmengine's) that is an averaged model."""
    from mmengine.model import BaseAveragedModel

    from visdet.registry import MODELS, registered_names

    names = []
    for name in registered_names(MODELS):
        cls = MODELS.get(name)
        if isinstance(cls, type) and issubclass(cls, BaseAveragedModel):
            names.append(name)
    return sorted(names)


def local_ema_type(ema_type: str) -> str:
    """``ema_type`` without an ``mmdet.``/``mmengine.`` prefix when visdet's scope has the bare name."""
    from visdet.registry import MODELS

    for prefix in _FOREIGN_SCOPES:
        if ema_type.startswith(prefix) and MODELS.get(ema_type[len(prefix):]) is not None:
            return ema_type[len(prefix):]
    return ema_type


def averaged_model_class(ema_type: Any, key: str) -> type:
    """The averaged-model class ``ema_type`` names, or a ConfigError with the close names."""
    from mmengine.model import BaseAveragedModel

    from visdet.registry import MODELS

    cls = ema_type
    if isinstance(ema_type, str):
        cls = MODELS.get(local_ema_type(ema_type))
    names = averaged_model_names()
    if not (isinstance(cls, type) and issubclass(cls, BaseAveragedModel)):
        hint = suggestion_text(str(ema_type), names) or ""
        raise ConfigError(f"unknown ema_type {ema_type!r}{hint} (averaged models: {', '.join(names)})", key)
    return cls


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_ema_hook_args(args: Mapping[str, Any], key: str = "EMAHook") -> type:
    """Raise a ConfigError for the first bad keyword or value of an EMAHook config; return the averaged class."""
    cls = averaged_model_class(args.get("ema_type", "ExponentialMovingAverage"), f"{key}.ema_type")
    model_keys = [n for n in accepted_keywords(cls, skip_first=True).names if n not in ("self", "model")]
    for name in args:
        if name not in HOOK_KEYS and name not in model_keys:
            valid = [k for k in HOOK_KEYS if k != "type"] + model_keys
            raise ConfigError(f"EMAHook with ema_type {cls.__name__} has no argument '{name}'"
                              f"{suggestion_text(name, valid)}\nValid arguments: {', '.join(valid)}",
                              f"{key}.{name}")
    momentum = args.get("momentum")
    if "momentum" in args and not (_number(momentum) and 0.0 < momentum < 1.0):
        raise ConfigError(f"must be in (0, 1), the weight of the new weights in each update (MMDetection's "
                          f"YOLOX: 0.0002), got {momentum!r}", f"{key}.momentum")
    for name, minimum, integer in (("gamma", 0, False), ("interval", 1, True), ("begin_iter", 0, True),
                                   ("begin_epoch", 0, True)):
        if name in args:
            value = args[name]
            ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _number(value)
            if not ok or value < minimum or (name == "gamma" and value <= 0):
                what = {"gamma": "a positive number", "interval": "a positive integer"}.get(
                    name, "an integer >= 0")
                raise ConfigError(f"must be {what}, got {value!r}", f"{key}.{name}")
    if args.get("begin_iter", 0) and args.get("begin_epoch", 0):
        raise ConfigError("set begin_iter or begin_epoch, not both", f"{key}.begin_epoch")
    if args.get("test_weights", "ema") not in TEST_WEIGHTS:
        raise ConfigError(f"must be one of {', '.join(map(repr, TEST_WEIGHTS))}, got {args['test_weights']!r}",
                          f"{key}.test_weights")
    for name in ("update_buffers", "strict_load"):
        if name in args and not isinstance(args[name], bool):
            raise ConfigError(f"must be True or False, got {args[name]!r}", f"{key}.{name}")
    return cls


def ema_hook_entries(cfg: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(key, entry)`` for every custom hook that is mmengine's EMAHook or a subclass (visdet's)."""
    from mmengine.hooks import EMAHook

    from visdet.registry import HOOKS

    found = []
    for i, entry in enumerate(cfg.get("custom_hooks") or []):
        if not isinstance(entry, Mapping):
            continue
        hook_type = entry.get("type")
        cls = HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
        if isinstance(cls, type) and issubclass(cls, EMAHook):
            found.append((f"custom_hooks[{i}]", entry))
    return found


def check_ema_hooks(cfg: Mapping[str, Any]) -> None:
    """Every EMAHook in ``custom_hooks`` checked (a ConfigError names the first mistake)."""
    for key, entry in ema_hook_entries(cfg):
        check_ema_hook_args(entry, key)


def _optimizer_class(cfg: Mapping[str, Any]) -> Any:
    from visdet.registry import OPTIMIZERS

    wrapper = cfg.get("optim_wrapper")
    optimizer = wrapper.get("optimizer") if isinstance(wrapper, Mapping) else None
    opt_type = optimizer.get("type") if isinstance(optimizer, Mapping) else None
    cls = OPTIMIZERS.get(opt_type) if isinstance(opt_type, str) else opt_type
    while isinstance(cls, functools.partial):  # an alias with its defaults bound
        cls = cls.func
    return cls


def is_schedule_free_class(cls: Any) -> bool:
    """Whether optimizer class ``cls`` switches between a training and an averaged point (``train``/``eval``)."""
    import torch

    return (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
            and callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None)))


def ema_warnings(cfg: Mapping[str, Any]) -> list[str]:
    """One line per EMAHook with a large momentum, or combined with a schedule-free optimizer (already averaging)."""
    entries = ema_hook_entries(cfg)
    messages = [f"{key}.momentum: is {entry['momentum']}, the weight of the NEW weights in each update (mmengine's "
                f"sense, not the optimizer's): the average barely averages; the optimizer-style {entry['momentum']} "
                f"is written momentum={1 - entry['momentum']:.4g}"
                for key, entry in entries if _number(entry.get("momentum")) and 0.5 < entry["momentum"] < 1.0]
    cls = _optimizer_class(cfg) if entries else None
    if not is_schedule_free_class(cls):
        return messages
    return messages + [
        f"{key}: EMAHook averages the weights of {cls.__name__} (optim_wrapper.optimizer), a schedule-free "
        f"optimizer that already averages them (ScheduleFreeHook validates and saves its average): the EMA "
        f"of that average only lags behind it; remove the EMAHook or use a scheduled optimizer"
        for key, _ in entries]


def select_test_weights(cfg: Any, raw: bool) -> None:
    """For ``tools/test.py``: every EMAHook tests the raw weights when ``raw`` (one is added if the config has none).

    A checkpoint saved with an EMAHook holds the EMA weights in ``state_dict``
    and the raw ones in ``ema_state_dict``, so the raw weights need the hook.
    """
    if not raw:
        return
    entries = ema_hook_entries(cfg)
    for _, entry in entries:
        entry["test_weights"] = "raw"
    if not entries:
        cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="EMAHook", test_weights="raw")]
