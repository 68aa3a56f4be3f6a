"""Build a sub-module from its config with errors that name the config key.

``Registry.build`` reports an unknown type as a bare ``KeyError`` without saying
where in the config it was, and a wrong argument as a ``TypeError`` from some
``__init__``. Detectors nest many configs, so every sub-module build goes
through :func:`build_component`, which names the key and suggests close names.
"""
from __future__ import annotations

import inspect
from typing import Any

from mmengine.registry import Registry

from visdet.utils.suggestions import suggestion_text
from visdet.models.errors import ModelConfigError
from visdet.registry import registered_names


def build_component(cfg: Any, registry: Registry, key: str, default_args: dict | None = None) -> Any:
    """``registry.build(cfg)``, raising :class:`ModelConfigError` naming ``key``.

    Args:
        cfg: A config dict with ``type``, or an already built object (returned as is).
        registry: Where ``type`` is looked up (``MODELS`` or ``TASK_UTILS``).
        key: The config path of ``cfg``, e.g. ``'model.backbone'``.
        default_args: Arguments used where ``cfg`` has none.
    """
    if not isinstance(cfg, dict):
        if cfg is None:
            raise ModelConfigError("is missing; give a dict with a 'type' key", key)
        return cfg
    if "type" not in cfg:
        raise ModelConfigError(f"has no 'type'; got keys {sorted(cfg)}", key)
    obj_type = cfg["type"]
    registry.import_from_location()
    if isinstance(obj_type, str):
        with registry.switch_scope_and_registry(cfg.get("_scope_")) as scoped:
            found = scoped.get(obj_type)
            names = registered_names(scoped)
        if found is None:
            own = list(registry.module_dict)
            hint = suggestion_text(obj_type, names)
            listing = ", ".join(sorted(own)[:40])
            raise ModelConfigError(
                f"unknown type '{obj_type}' in the {registry.scope}::{registry.name} registry{hint} "
                f"(visdet registers: {listing})",
                f"{key}.type",
            )
    elif not callable(obj_type):
        raise ModelConfigError(f"'type' must be a registered name or a class, got {type(obj_type).__name__}",
                               f"{key}.type")
    try:
        return registry.build(cfg, default_args=default_args)
    except TypeError as err:
        if not _is_signature_error(err):
            raise
        name = obj_type if isinstance(obj_type, str) else obj_type.__name__
        raise ModelConfigError(f"bad arguments for '{name}': {err}", key) from err


def _is_signature_error(err: TypeError) -> bool:
    """Whether ``err`` came from calling a constructor with wrong keywords."""
    text = str(err)
    if "unexpected keyword argument" not in text and "required positional argument" not in text:
        return False
    frames = inspect.trace()
    # The failing call is the constructor itself when the innermost frame is build_from_cfg.
    return len(frames) > 0 and frames[-1].function == "build_from_cfg"
