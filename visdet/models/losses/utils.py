"""Weighting and reduction shared by the losses, with mmdet's ``avg_factor`` rule.

torch's losses reduce by ``mean`` over elements; detection averages a summed
loss over the number of *sampled* anchors/RoIs (``avg_factor``), which torch
does not offer, so this one rule is written here.
"""
from __future__ import annotations

import torch

from visdet.models.errors import ModelConfigError

REDUCTIONS = ("none", "mean", "sum")
_EPS = torch.finfo(torch.float32).eps


def check_reduction(reduction: str, key: str) -> str:
    """``reduction`` if valid, else a :class:`ModelConfigError` naming ``key``."""
    if reduction not in REDUCTIONS:
        raise ModelConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}", key)
    return reduction


def weight_reduce_loss(loss: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean",
                       avg_factor: float | torch.Tensor | None = None) -> torch.Tensor:
    """Apply element-wise ``weight``, then reduce; ``mean`` divides by ``avg_factor`` when given."""
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / (avg_factor + _EPS)
