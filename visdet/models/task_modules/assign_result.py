"""What an assigner decided for each prior, and which priors a sampler kept.

mmdet's ``AssignResult``/``SamplingResult`` carry exactly these fields; they are
plain dataclasses here because nothing else in the stack needs their extras.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AssignResult:
    """Per prior: ``gt_inds`` (0 negative, -1 ignored, i > 0 matched to gt ``i - 1``),
    ``max_overlaps`` (best IoU) and ``labels`` (-1 where not positive)."""

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor

    def add_gt_(self, gt_labels: torch.Tensor) -> None:
        """Prepend the ground truths themselves as positive priors (``add_gt_as_proposals``)."""
        self_inds = torch.arange(1, len(gt_labels) + 1, dtype=torch.long, device=gt_labels.device)
        self.gt_inds = torch.cat([self_inds, self.gt_inds])
        self.max_overlaps = torch.cat([self.max_overlaps.new_ones(len(gt_labels)), self.max_overlaps])
        self.labels = torch.cat([gt_labels, self.labels])


@dataclass
class SamplingResult:
    """The sampled positive and negative priors of one image, positives first."""

    pos_inds: torch.Tensor
    neg_inds: torch.Tensor
    pos_priors: torch.Tensor
    neg_priors: torch.Tensor
    pos_gt_bboxes: torch.Tensor
    pos_gt_labels: torch.Tensor
    pos_assigned_gt_inds: torch.Tensor
    pos_is_gt: torch.Tensor

    @property
    def priors(self) -> torch.Tensor:
        return torch.cat([self.pos_priors, self.neg_priors])

    @property
    def num_pos(self) -> int:
        return self.pos_inds.numel()

    @property
    def num_neg(self) -> int:
        return self.neg_inds.numel()

    @property
    def avg_factor(self) -> int:
        """Samples the loss is averaged over (positives plus negatives, as mmdet's samplers)."""
        return self.num_pos + self.num_neg
