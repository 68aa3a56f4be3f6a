"""Classification loss for RPN (sigmoid, one logit per anchor) and R-CNN (softmax, K+1 logits)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visdet.models.losses.utils import check_reduction, weight_reduce_loss
from visdet.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """mmdet's CrossEntropyLoss: torch's CE plus per-sample weights and ``avg_factor``.

    With ``use_sigmoid=True`` integer labels in ``[0, C)`` become one-hot
    targets over the ``C`` logits and label ``C`` (background) an all-zero row,
    as mmdet does for the RPN, whose only class is index 0.

    Args:
        use_sigmoid: Binary CE with logits instead of softmax CE.
        reduction: 'none', 'mean' or 'sum'.
        class_weight: Optional per-class weights (softmax only).
        loss_weight: Multiplier of the loss.
    """

    def __init__(self, use_sigmoid: bool = False, use_mask: bool = False, reduction: str = "mean",
                 class_weight: list[float] | None = None, ignore_index: int = -100, loss_weight: float = 1.0,
                 avg_non_ignore: bool = False) -> None:
        super().__init__()
        if use_mask:
            from visdet.models.errors import ModelConfigError

            raise ModelConfigError("use_mask=True (mask losses) is not supported; use use_mask=False",
                                   "model.*.loss_cls.use_mask")
        self.use_sigmoid = use_sigmoid
        self.reduction = check_reduction(reduction, "model.*.loss_cls.reduction")
        self.class_weight = class_weight
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> torch.Tensor:
        """Loss of ``cls_score`` (N, C) against integer ``label`` (N,) or float targets (N, C)."""
        reduction = reduction_override or self.reduction
        if self.use_sigmoid:
            loss = self._sigmoid(cls_score, label, weight)
        else:
            cw = cls_score.new_tensor(self.class_weight) if self.class_weight is not None else None
            loss = F.cross_entropy(cls_score, label, weight=cw, reduction="none", ignore_index=self.ignore_index)
            if weight is not None:
                loss = loss * weight.float()
        return self.loss_weight * weight_reduce_loss(loss, None, reduction, avg_factor)

    def _sigmoid(self, cls_score: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        if cls_score.dim() == 1 or cls_score.shape == label.shape and label.is_floating_point():
            target = label.float().view_as(cls_score)
            w = None if weight is None else weight.float().view_as(cls_score)
        else:
            num_classes = cls_score.size(-1)
            valid = (label >= 0) & (label < num_classes)
            target = torch.zeros_like(cls_score)
            target[valid, label[valid]] = 1.0
            w = None if weight is None else weight.float().view(-1, 1).expand_as(cls_score)
        return F.binary_cross_entropy_with_logits(cls_score, target, weight=w, reduction="none")
