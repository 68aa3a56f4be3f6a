"""MaxIoUAssigner on hand-made IoU matrices with known answers."""
from __future__ import annotations

import torch

from visdet.models import MaxIoUAssigner


def test_thresholds_and_low_quality_match():
    # rows: 2 gts, columns: 5 priors
    overlaps = torch.tensor([[0.80, 0.40, 0.10, 0.00, 0.35],
                             [0.20, 0.45, 0.05, 0.20, 0.35]])
    labels = torch.tensor([4, 7])
    plain = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.3, match_low_quality=False)
    res = plain.assign_wrt_overlaps(overlaps, labels)
    assert res.gt_inds.tolist() == [1, -1, 0, 0, -1]
    assert res.labels.tolist() == [4, -1, -1, -1, -1]
    low = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)
    res = low.assign_wrt_overlaps(overlaps, labels)
    # gt 2's best prior (0.45) becomes positive through the low-quality match
    assert res.gt_inds.tolist() == [1, 2, 0, 0, -1]
    assert res.labels.tolist() == [4, 7, -1, -1, -1]
    assert torch.allclose(res.max_overlaps, torch.tensor([0.80, 0.45, 0.10, 0.20, 0.35]))


def test_min_pos_iou_and_gt_max_assign_all_ties_last_gt_wins():
    overlaps = torch.tensor([[0.25, 0.50, 0.50, 0.00],
                             [0.00, 0.10, 0.50, 0.10]])
    labels = torch.tensor([0, 1])
    all_ties = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.2, min_pos_iou=0.3, gt_max_assign_all=True)
    # gt1 ties on priors 1 and 2; gt2 also claims prior 2 and, coming later, wins it
    assert all_ties.assign_wrt_overlaps(overlaps, labels).gt_inds.tolist() == [-1, 1, 2, 0]
    one = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.2, min_pos_iou=0.3, gt_max_assign_all=False)
    assert one.assign_wrt_overlaps(overlaps, labels).gt_inds.tolist() == [-1, 1, 2, 0]
    strict = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.2, min_pos_iou=0.6)
    assert strict.assign_wrt_overlaps(overlaps, labels).gt_inds.tolist() == [-1, -1, -1, 0]


def test_no_gts_makes_everything_negative_and_boxes_use_iou():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50.0, 60.0, 60.0]])
    res = assigner.assign(priors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert res.gt_inds.tolist() == [0, 0, 0]
    res = assigner.assign(priors, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([2]))
    assert res.gt_inds.tolist() == [1, 1, 0] and res.labels.tolist() == [2, 2, -1]
