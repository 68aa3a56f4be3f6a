"""Check, before the model is built, the ``optim_wrapper`` keys that a closure optimizer cannot honour.

A closure optimizer (SAM family, LBFGS, AliG, ``*ScheduleFreeClosure``)
re-evaluates the loss on one batch inside ``step(closure)``
(``wrappers/drivers/closure.py``). So gradient accumulation over several
batches, and float16's ``GradScaler`` (whose ``step`` takes no closure), are
refused here; ``closure_interval`` (perturb every N steps, plain base-optimizer
steps in between) must be an integer >= 1, and above 1 only for an optimizer
that wraps a base optimizer (the SAM family). The driver refuses the same at
run time for wrappers built without a constructor.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from visdet.engine.optim.catalog.catalogue import get_catalog, spec_for_class
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec
from visdet.engine.optim.config.arguments import check_int_at_least
from visdet.engine.optim.errors import OptimizerConfigError

WRAPPER_KEY = "optim_wrapper"
#: Keys under which an optimizer config nests the config of the optimizer it wraps.
NESTED_KEYS = ("optimizer", "base_optimizer")
INTERVAL_KEY = f"{WRAPPER_KEY}.closure_interval"


def check_closure_interval(value: Any, key: str = INTERVAL_KEY) -> None:
    """Refuse a ``closure_interval`` that is not an integer >= 1."""
    check_int_at_least(value, "closure_interval", key, 1)


def _spec(obj_type: Any) -> OptimizerSpec | None:
    """The catalogue record of a config's ``type`` (a name, an alias or a class), if visdet knows it."""
    if isinstance(obj_type, type):
        return spec_for_class(obj_type)
    if isinstance(obj_type, str):
        entry = get_catalog().lookup(obj_type)
        return entry.spec if entry is not None else None
    return None


def _specs(optimizer_cfg: Any) -> Iterator[OptimizerSpec]:
    """The records of an optimizer config and of the configs nested in it (Lookahead around SAM around SGD)."""
    while isinstance(optimizer_cfg, Mapping):
        spec = _spec(optimizer_cfg.get("type"))
        if spec is not None:
            yield spec
        optimizer_cfg = next((optimizer_cfg[k] for k in NESTED_KEYS if isinstance(optimizer_cfg.get(k), Mapping)),
                             None)


def _is_float16(dtype: Any) -> bool:
    return dtype in ("float16", "torch.float16", torch.float16)


def check_closure_cfg(wrapper_cfg: Mapping[str, Any], optimizer_cfg: Any) -> None:
    """Refuse wrapper keys a closure optimizer cannot run with; refuse ``closure_interval`` for any other."""
    specs = list(_specs(optimizer_cfg))
    closure = next((s for s in specs if Need.CLOSURE in s.needs), None)
    interval = wrapper_cfg.get("closure_interval", 1)
    if "closure_interval" in wrapper_cfg:
        check_closure_interval(interval)
    if closure is None:
        if interval != 1:
            name = specs[0].name if specs else "this optimizer"
            raise OptimizerConfigError(
                f"applies only to closure optimizers of the SAM family; {name} steps without a closure, "
                "so drop closure_interval", INTERVAL_KEY)
        return
    name = closure.name
    counts = wrapper_cfg.get("accumulative_counts", 1)
    if counts != 1:
        raise OptimizerConfigError(
            f"must be 1 for {name}: its step(closure) re-evaluates the loss on one batch, which cannot be "
            f"accumulated over {counts}; use a larger batch instead", f"{WRAPPER_KEY}.accumulative_counts")
    if _is_float16(wrapper_cfg.get("dtype")):
        raise OptimizerConfigError(
            f"float16 needs a GradScaler, whose step takes no closure, so {name} cannot step under it; use "
            "dtype='bfloat16' (or float32)", f"{WRAPPER_KEY}.dtype")
    if interval != 1 and not (specs and Need.BASE_OPTIMIZER in specs[0].needs and Need.CLOSURE in specs[0].needs):
        raise OptimizerConfigError(
            f"closure_interval={interval} needs an optimizer of the SAM family (one that wraps a base optimizer, "
            f"stepped plainly in between); {specs[0].name if specs else name} is not one", INTERVAL_KEY)
