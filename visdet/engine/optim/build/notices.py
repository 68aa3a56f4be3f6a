"""What the constructor tells the user about a plan: unused ``custom_keys``, frozen and shared parameters."""
from __future__ import annotations

import logging
import warnings

from mmengine.logging import print_log

from visdet.engine.optim.build.param_groups import ParamPlan
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY


def warn_unused_custom_keys(plan: ParamPlan) -> None:
    """Warn about ``custom_keys`` entries that set nothing, and say why."""
    if not plan.unused_custom_keys:
        return
    parts = []
    for key in plan.unused_custom_keys:
        winners = plan.shadowed_by.get(key)
        if winners:
            parts.append(f"{key!r} is always overridden by the longer key {' / '.join(map(repr, winners))}")
        else:
            parts.append(f"{key!r} matched no parameter")
    warnings.warn(
        f"{WRAPPER_KEY}.paramwise_cfg.custom_keys: {'; '.join(parts)} (a key applies to the names that contain it, "
        "and only the longest matching key applies). Run tools/print_param_groups.py to see each parameter's "
        "name and settings.",
        OptimizerConfigWarning,
        stacklevel=3,
    )


def log_frozen_and_shared(plan: ParamPlan) -> None:
    """Say, as mmengine's constructor does, which parameters are frozen and which shared ones were counted once."""
    if plan.frozen:
        print_log(
            f"{len(plan.frozen)} parameters have requires_grad=False ({_listed(plan.frozen)}); they are in the "
            "optimizer and stay unchanged until a hook sets requires_grad=True",
            logger="current", level=logging.INFO,
        )
    for skipped, kept in plan.duplicates:  # mmengine warns once per skipped duplicate
        print_log(f"{skipped} is duplicate (the same parameter as {kept}); it is skipped, {kept} is optimized once",
                  logger="current", level=logging.WARNING)


def _listed(names: list[str], limit: int = 10) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f", ... ({more} more)" if more > 0 else "")
