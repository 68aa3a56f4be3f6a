"""Box regression losses with per-coordinate weights and ``avg_factor``."""
from __future__ import annotations

import torch
from torch import nn

from visdet.models.errors import ModelConfigError
from visdet.models.losses.utils import check_reduction, weight_reduce_loss
from visdet.registry import MODELS


class _WeightedLoss(nn.Module):
    """Shared ``forward``: element loss, weights, reduction, ``loss_weight``."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, "model.*.loss_bbox.reduction")
        self.loss_weight = loss_weight

    def element_loss(self, diff: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> torch.Tensor:
        """Loss between ``pred`` and ``target`` of the same shape."""
        reduction = reduction_override or self.reduction
        if target.numel() == 0:
            return pred.sum() * 0
        loss = self.element_loss(torch.abs(pred - target))
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class L1Loss(_WeightedLoss):
    """``|pred - target|`` (torch's ``l1_loss`` lacks weights and ``avg_factor``)."""

    def element_loss(self, diff: torch.Tensor) -> torch.Tensor:
        return diff


@MODELS.register_module()
class SmoothL1Loss(_WeightedLoss):
    """Huber-like loss: quadratic below ``beta``, linear above (mmdet's formula).

    Args:
        beta: Where the loss turns linear; must be > 0.
    """

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        if beta <= 0:
            raise ModelConfigError(f"beta must be > 0, got {beta}", "model.*.loss_bbox.beta")
        self.beta = beta

    def element_loss(self, diff: torch.Tensor) -> torch.Tensor:
        return torch.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
