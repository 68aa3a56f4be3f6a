"""Label priors positive/negative by IoU with the ground truths (mmdet's ``MaxIoUAssigner``).

torchvision's ``Matcher`` has the same thresholds but not mmdet's
``min_pos_iou`` / ``gt_max_assign_all`` rules or its result layout, so the
rule is written here, vectorised over priors and ground truths.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from visdet.models.errors import ModelConfigError
from visdet.models.task_modules.assign_result import AssignResult
from visdet.registry import TASK_UTILS

_KEY = "model.train_cfg.*.assigner"


@TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Each prior takes the ground truth it overlaps most.

    - IoU >= ``pos_iou_thr``: positive; IoU in ``[0, neg_iou_thr)`` (or the
      ``(lo, hi)`` range given): negative; otherwise ignored (-1).
    - ``match_low_quality``: every ground truth also claims its best priors
      (all priors tying the best if ``gt_max_assign_all``) when that IoU is at
      least ``min_pos_iou``; later ground truths win ties, as in mmdet.

    Args:
        pos_iou_thr: IoU for a positive.
        neg_iou_thr: IoU below which (float) or range within which (tuple) a prior is negative.
        min_pos_iou: Least IoU for a low-quality match.
        gt_max_assign_all: Give a ground truth all of its equally best priors.
        match_low_quality: Enable the low-quality matches.
        ignore_iof_thr: Must be -1: visdet drops ignored instances before the model.
    """

    def __init__(self, pos_iou_thr: float, neg_iou_thr: float | tuple[float, float], min_pos_iou: float = 0.0,
                 gt_max_assign_all: bool = True, ignore_iof_thr: float = -1, ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True, gpu_assign_thr: float = -1,
                 iou_calculator: dict | None = None) -> None:
        if ignore_iof_thr > 0:
            raise ModelConfigError("ignore_iof_thr > 0 needs ignored boxes, which visdet drops in the dataset; "
                                   "use -1", f"{_KEY}.ignore_iof_thr")
        if isinstance(neg_iou_thr, (list, tuple)) and len(neg_iou_thr) != 2:
            raise ModelConfigError(f"a float or a (low, high) pair, got {neg_iou_thr}", f"{_KEY}.neg_iou_thr")
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.match_low_quality = match_low_quality

    def assign(self, priors: torch.Tensor, gt_bboxes: torch.Tensor, gt_labels: torch.Tensor) -> AssignResult:
        """Assign (N, 4) ``priors`` to (G, 4) ``gt_bboxes`` with labels (G,)."""
        return self.assign_wrt_overlaps(box_iou(gt_bboxes, priors), gt_labels)

    def assign_wrt_overlaps(self, overlaps: torch.Tensor, gt_labels: torch.Tensor) -> AssignResult:
        """Assign from a (G, N) IoU matrix."""
        num_gts, num_priors = overlaps.shape
        device = overlaps.device
        gt_inds = overlaps.new_full((num_priors,), -1, dtype=torch.long)
        if num_gts == 0 or num_priors == 0:
            if num_gts == 0:
                gt_inds.zero_()
            return AssignResult(num_gts, gt_inds, overlaps.new_zeros(num_priors),
                                gt_inds.new_full((num_priors,), -1))
        max_overlaps, argmax = overlaps.max(dim=0)
        if isinstance(self.neg_iou_thr, (list, tuple)):
            neg = (max_overlaps >= self.neg_iou_thr[0]) & (max_overlaps < self.neg_iou_thr[1])
        else:
            neg = (max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)
        gt_inds[neg] = 0
        pos = max_overlaps >= self.pos_iou_thr
        gt_inds[pos] = argmax[pos] + 1
        if self.match_low_quality:
            gt_max, gt_argmax = overlaps.max(dim=1)
            if self.gt_max_assign_all:
                claims = overlaps == gt_max[:, None]
            else:
                claims = torch.zeros_like(overlaps, dtype=torch.bool)
                claims[torch.arange(num_gts, device=device), gt_argmax] = True
            claims &= (gt_max >= self.min_pos_iou)[:, None]
            # The last claiming gt wins, as in mmdet's loop over gts.
            ranks = claims * torch.arange(1, num_gts + 1, device=device)[:, None]
            winner = ranks.max(dim=0).values
            gt_inds = torch.where(winner > 0, winner, gt_inds)
        labels = gt_inds.new_full((num_priors,), -1)
        is_pos = gt_inds > 0
        labels[is_pos] = gt_labels[gt_inds[is_pos] - 1]
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
