"""Pick a fixed number of positive and negative priors at random (mmdet's ``RandomSampler``)."""
from __future__ import annotations

import torch

from visdet.models.errors import ModelConfigError
from visdet.models.task_modules.assign_result import AssignResult, SamplingResult
from visdet.registry import TASK_UTILS

_KEY = "model.train_cfg.*.sampler"


def _choose(inds: torch.Tensor, num: int) -> torch.Tensor:
    """At most ``num`` of ``inds``, uniformly without replacement."""
    if inds.numel() <= num:
        return inds
    return inds[torch.randperm(inds.numel(), device=inds.device)[:num]]


@TASK_UTILS.register_module()
class RandomSampler:
    """Sample ``num`` priors, at most ``num * pos_fraction`` positive, the rest negative.

    Args:
        num: Samples per image.
        pos_fraction: Upper share of positives.
        neg_pos_ub: Negatives at most this many times the positives (-1: no bound).
        add_gt_as_proposals: Prepend the ground-truth boxes as candidate positives.
        context: The head building the sampler (accepted for mmdet compatibility).
    """

    def __init__(self, num: int, pos_fraction: float, neg_pos_ub: int = -1, add_gt_as_proposals: bool = True,
                 context: object | None = None, **kwargs: object) -> None:
        if num <= 0:
            raise ModelConfigError(f"must be a positive number of samples, got {num}", f"{_KEY}.num")
        if not 0 <= pos_fraction <= 1:
            raise ModelConfigError(f"must be in [0, 1], got {pos_fraction}", f"{_KEY}.pos_fraction")
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals

    def sample(self, assign_result: AssignResult, priors: torch.Tensor, gt_bboxes: torch.Tensor,
               gt_labels: torch.Tensor) -> SamplingResult:
        """Sample from the ``priors`` (N, 4) that ``assign_result`` labelled."""
        priors = priors[:, :4]
        gt_flags = priors.new_zeros(priors.size(0), dtype=torch.bool)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            priors = torch.cat([gt_bboxes.to(priors.dtype), priors])
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([gt_flags.new_ones(len(gt_bboxes)), gt_flags])
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = _choose(torch.nonzero(assign_result.gt_inds > 0).squeeze(1), num_expected_pos)
        num_expected_neg = self.num - pos_inds.numel()
        if self.neg_pos_ub >= 0:
            num_expected_neg = min(num_expected_neg, int(self.neg_pos_ub * max(1, pos_inds.numel())))
        neg_inds = _choose(torch.nonzero(assign_result.gt_inds == 0).squeeze(1), num_expected_neg)
        assigned = assign_result.gt_inds[pos_inds] - 1
        if gt_bboxes.numel() == 0:
            pos_gt_bboxes = gt_bboxes.new_zeros((0, 4))
        else:
            pos_gt_bboxes = gt_bboxes[assigned]
        return SamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, pos_priors=priors[pos_inds],
                              neg_priors=priors[neg_inds], pos_gt_bboxes=pos_gt_bboxes,
                              pos_gt_labels=assign_result.labels[pos_inds], pos_assigned_gt_inds=assigned,
                              pos_is_gt=gt_flags[pos_inds])
