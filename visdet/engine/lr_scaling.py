"""``auto_scale_lr``: the factor that scales the lr from the batch it was tuned for to the real one.

MMDetection scales linearly (Goyal et al., 2017) by ``world_size x batch_size
/ base_batch_size`` and ignores gradient accumulation (mmengine#894). Here the
real batch is ``world_size x train_dataloader.batch_size x
optim_wrapper.accumulative_counts``, and ``rule`` chooses how the lr follows it:

* ``'linear'`` (the default, MMDetection's): ``lr x ratio``;
* ``'sqrt'``: ``lr x sqrt(ratio)``, for adaptive optimizers (Krizhevsky 2014, Hoffer et al. 2017);
* ``'auto'``: as timm's train.py chooses, ``'sqrt'`` when the optimizer's
  name holds ``'ada'`` or ``'lamb'`` (Adam, AdamW, Adafactor, Adan, LAMB...),
  ``'linear'`` otherwise; and none at all for learning-rate-free optimizers
  (D-Adaptation, Prodigy: their ``lr`` multiplies a step size they estimate),
  which the optimizer catalogue marks with the note ``LR_IS_A_MULTIPLIER``.

The Runner (``visdet/engine/runner.py``) and ``tools/print_param_groups.py``
both call :func:`lr_scaling`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RULES = ("linear", "sqrt", "auto")
#: Substrings of an optimizer's name for which timm scales the lr by the square root of the batch ratio.
SQRT_NAME_PARTS = ("ada", "lamb")


@dataclass(frozen=True)
class LrScaling:
    """What ``auto_scale_lr`` does: the factor every group's lr is multiplied by, and why."""

    factor: float
    reason: str


def is_lr_free(optimizer_type: str | None) -> bool:
    """Whether the catalogue records ``optimizer_type``'s lr as a multiplier of a step size it estimates."""
    from visdet.engine.optim.catalog.catalogue import get_catalog
    from visdet.engine.optim.catalog.notes import LR_IS_A_MULTIPLIER

    if not optimizer_type:
        return False
    catalog = get_catalog()
    entry = catalog.lookup(optimizer_type) or catalog.lookup(optimizer_type.rsplit(".", 1)[-1])
    return entry is not None and LR_IS_A_MULTIPLIER in entry.spec.notes


def lr_scaling(auto_scale_lr: Mapping[str, Any] | None, world_size: int, batch_size: int,
               accumulative_counts: int = 1, optimizer_type: str | None = None) -> LrScaling | None:
    """The scaling ``auto_scale_lr`` asks for; None when it is off.

    Args:
        auto_scale_lr: ``dict(enable, base_batch_size, rule='linear')`` (checked at preflight).
        world_size: Processes.
        batch_size: ``train_dataloader.batch_size`` (per process).
        accumulative_counts: ``optim_wrapper.accumulative_counts``: steps per optimizer update.
        optimizer_type: The optimizer's config ``type`` (for ``rule='auto'``).
    """
    if not auto_scale_lr or not auto_scale_lr.get("enable", False):
        return None
    base = auto_scale_lr["base_batch_size"]
    real = world_size * batch_size * accumulative_counts
    ratio = real / base
    rule = auto_scale_lr.get("rule", "linear")
    processes = f"{world_size} process{'es' if world_size != 1 else ''}"
    batch = (f"the real batch {real} (= {processes} x batch_size {batch_size} x accumulative_counts "
             f"{accumulative_counts}) over base_batch_size {base}")
    name = (optimizer_type or "").rsplit(".", 1)[-1]
    if rule == "auto":
        if is_lr_free(optimizer_type):
            return LrScaling(1.0, f"rule='auto': {name} is learning-rate-free (its lr multiplies a step size it "
                                  "estimates), so the lr is not scaled")
        sqrt = any(part in name.lower() for part in SQRT_NAME_PARTS)
        rule_text = f"rule='auto' -> {'sqrt' if sqrt else 'linear'} for {name}"
    else:
        sqrt = rule == "sqrt"
        rule_text = f"rule='{rule}'"
    factor = math.sqrt(ratio) if sqrt else ratio
    return LrScaling(factor, f"{rule_text}: {batch} = {ratio:g}, so the lr is multiplied by {factor:g}")
