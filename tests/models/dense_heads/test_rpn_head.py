"""RPNHead: losses (with and without objects) and proposals."""
from __future__ import annotations

import torch
from mmengine.structures import InstanceData

from visdet.models import RPNHead

TRAIN = dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
             sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
             allowed_border=-1, pos_weight=-1)
TEST = dict(nms_pre=50, max_per_img=20, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)


def _head() -> RPNHead:
    return RPNHead(in_channels=8, feat_channels=8,
                   anchor_generator=dict(type="AnchorGenerator", scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8]),
                   bbox_coder=dict(type="DeltaXYWHBBoxCoder"),
                   loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True), loss_bbox=dict(type="L1Loss"),
                   train_cfg=TRAIN, test_cfg=TEST)


def _feats():
    torch.manual_seed(0)
    return [torch.rand(2, 8, 16, 16), torch.rand(2, 8, 8, 8)]


META = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))


def test_outputs_per_level_and_init():
    head = _head()
    cls, reg = head(_feats())
    assert [c.shape for c in cls] == [(2, 3, 16, 16), (2, 3, 8, 8)]
    assert [r.shape for r in reg] == [(2, 12, 16, 16), (2, 12, 8, 8)]
    assert abs(float(head.rpn_cls.weight.detach().std()) - 0.01) < 0.005


def test_loss_with_objects_and_with_none():
    head = _head()
    cls, reg = head(_feats())
    gts = [InstanceData(bboxes=torch.tensor([[8.0, 8.0, 24.0, 24.0]]), labels=torch.tensor([2])),
           InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    losses = head.loss_by_feat(cls, reg, gts, [META, META])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    assert all(torch.isfinite(v) for v in losses.values())
    # all-zero logits: BCE of 0 is log 2 whatever the labels
    assert abs(losses["loss_rpn_cls"].item() - 0.6931) < 0.01
    assert losses["loss_rpn_bbox"].item() > 0
    (losses["loss_rpn_cls"] + losses["loss_rpn_bbox"]).backward()
    assert head.rpn_reg.weight.grad is not None
    empty = head.loss_by_feat(cls, reg, [gts[1], gts[1]], [META, META])
    assert empty["loss_rpn_bbox"].item() == 0.0 and torch.isfinite(empty["loss_rpn_cls"])


def test_proposals_are_inside_the_image_sorted_and_capped():
    head = _head()
    with torch.no_grad():
        cls, reg = head(_feats())
        props = head.predict_by_feat(cls, reg, [META, dict(META, img_shape=(40, 64))], TEST, "model.test_cfg.rpn")
    for p, (h, w) in zip(props, [(64, 64), (40, 64)]):
        assert 0 < len(p) <= 20 and p.bboxes.shape[1] == 4
        assert float(p.bboxes[:, 0::2].min()) >= 0 and float(p.bboxes[:, 2].max()) <= w
        assert float(p.bboxes[:, 3].max()) <= h
        assert bool((p.bboxes[:, 2] > p.bboxes[:, 0]).all() and (p.bboxes[:, 3] > p.bboxes[:, 1]).all())
        assert bool((p.scores[:-1] >= p.scores[1:]).all()) and bool(((p.scores >= 0) & (p.scores <= 1)).all())
