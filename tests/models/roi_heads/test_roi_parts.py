"""SingleRoIExtractor level mapping and pooling; Shared2FCBBoxHead targets and prediction."""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

from visdet.models import Shared2FCBBoxHead, SingleRoIExtractor
from visdet.models.roi_heads import bbox2roi
from visdet.models.task_modules import SamplingResult


def test_rois_map_to_levels_by_scale_and_pool_from_there():
    ext = SingleRoIExtractor(roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0), out_channels=4,
                             featmap_strides=[4, 8, 16, 32])
    sizes = [32.0, 112.0, 224.0, 448.0, 1000.0]
    rois = bbox2roi([torch.tensor([[0.0, 0.0, s, s] for s in sizes])])
    assert ext.map_roi_levels(rois, 4).tolist() == [0, 1, 2, 3, 3]
    feats = [torch.rand(1, 4, 256 // s, 256 // s) for s in (4, 8, 16, 32)]
    out = ext(feats, rois)
    assert out.shape == (5, 4, 7, 7)
    expected = roi_align(feats[1], rois[1:2], (7, 7), 1 / 8, 0, aligned=True)
    assert torch.allclose(out[1:2], expected)


def _head() -> Shared2FCBBoxHead:
    return Shared2FCBBoxHead(in_channels=4, fc_out_channels=16, roi_feat_size=7, num_classes=3,
                             bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_stds=[0.1, 0.1, 0.2, 0.2]),
                             loss_cls=dict(type="CrossEntropyLoss"), loss_bbox=dict(type="L1Loss"))


def test_shapes_targets_put_background_last_and_losses():
    head = _head()
    cls, reg = head(torch.rand(6, 4, 7, 7))
    assert cls.shape == (6, 4) and reg.shape == (6, 12)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    res = SamplingResult(pos_inds=torch.arange(2), neg_inds=torch.arange(4), pos_priors=box.repeat(2, 1),
                         neg_priors=box.repeat(4, 1), pos_gt_bboxes=box.repeat(2, 1) + 1,
                         pos_gt_labels=torch.tensor([2, 0]), pos_assigned_gt_inds=torch.zeros(2, dtype=torch.long),
                         pos_is_gt=torch.zeros(2, dtype=torch.bool))
    labels, lw, targets, tw = head.get_targets([res])
    assert labels.tolist() == [2, 0, 3, 3, 3, 3]
    assert tw[:2].eq(1).all() and tw[2:].eq(0).all() and targets[2:].eq(0).all()
    losses = head.loss(cls, reg, labels, lw, targets, tw)
    assert set(losses) == {"loss_cls", "loss_bbox", "acc"}
    assert abs(losses["loss_cls"].item() - torch.log(torch.tensor(4.0)).item()) < 0.05


def test_predict_thresholds_nms_and_rescales():
    head = _head()
    rois = bbox2roi([torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 20.0, 90.0, 70.0]])])
    cls = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]])  # roi 0: class 0; roi 1: background
    reg = torch.zeros(2, 12)
    cfg = dict(score_thr=0.5, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
    meta = dict(img_shape=(100, 100), ori_shape=(50, 50), scale_factor=(2.0, 2.0))
    pred = head.predict_single(rois, cls, reg, meta, cfg, rescale=True)
    assert pred.labels.tolist() == [0]
    assert torch.allclose(pred.bboxes, torch.tensor([[5.0, 5.0, 25.0, 25.0]]))
    assert 0.9 < float(pred.scores[0]) <= 1.0


def test_predict_without_rois_returns_empty_detections():
    head = _head()
    cfg = dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
    meta = dict(img_shape=(100, 100), ori_shape=(50, 50), scale_factor=(2.0, 2.0))
    cls, reg = head(torch.rand(0, 4, 7, 7))
    pred = head.predict_single(torch.zeros(0, 5), cls, reg, meta, cfg, rescale=True)
    assert pred.bboxes.shape == (0, 4) and len(pred.labels) == 0
