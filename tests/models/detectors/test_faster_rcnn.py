"""FasterRCNN end to end: build errors, loss/predict/tensor modes, rescaling, and overfitting one image."""
from __future__ import annotations

import copy

import pytest
import torch
from torchvision.ops import box_iou

from frcnn_cfg import REFERENCE_MODEL, make_image, make_sample, small_model_cfg
from visdet.models import FasterRCNN, ModelConfigError
from visdet.registry import MODELS
from visdet.structures import DetDataSample

BOXES = [[6.0, 8.0, 30.0, 34.0], [36.0, 16.0, 60.0, 58.0]]
LABELS = [0, 2]
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"}


@pytest.fixture(scope="module")
def model() -> FasterRCNN:
    torch.manual_seed(0)
    return MODELS.build(small_model_cfg())


def _batch(scale: float = 1.0, hw=(64, 64)) -> dict:
    boxes = [[v * scale for v in b] for b in BOXES]
    return dict(inputs=[make_image(hw, boxes), make_image(hw, [], seed=1)],
                data_samples=[make_sample(hw, boxes, LABELS, scale), make_sample(hw, [], [], scale)])


def test_reference_config_builds_with_mmdet_structure():
    ref = MODELS.build(copy.deepcopy(REFERENCE_MODEL))
    assert isinstance(ref, FasterRCNN)
    assert ref.roi_head.bbox_head.fc_cls.out_features == 81  # 80 classes + background last
    assert ref.roi_head.bbox_head.fc_reg.out_features == 320
    assert ref.rpn_head.rpn_cls.out_channels == 3
    assert not any(p.requires_grad for p in ref.backbone.layer1.parameters())


@pytest.mark.parametrize("path, bad, expected", [
    (("neck",), "FPNN", r"model\.neck\.type: unknown type 'FPNN'.*'FPN'"),
    (("roi_head", "bbox_head"), "Shared2FCBoxHead", r"model\.roi_head\.bbox_head\.type.*'Shared2FCBBoxHead'"),
    (("train_cfg", "rpn", "sampler"), "RandomSamplr", r"model\.train_cfg\.rpn\.sampler\.type.*'RandomSampler'"),
    (("rpn_head", "loss_bbox"), "L1Los", r"model\.rpn_head\.loss_bbox\.type.*'L1Loss'"),
])
def test_unknown_type_anywhere_names_the_key(path, bad, expected):
    cfg = small_model_cfg()
    node = cfg
    for part in path:
        node = node[part]
    node["type"] = bad
    with pytest.raises(ModelConfigError, match=expected):
        MODELS.build(cfg)


def test_loss_mode_returns_finite_losses(model):
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode="loss")
    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(losses[k].item() > 0 for k in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"))
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert model.roi_head.bbox_head.fc_reg.weight.grad is not None
    assert model.backbone.layer1[0].conv1.weight.grad is None  # frozen_stages=1
    model.zero_grad()


def test_predict_returns_rescaled_detections_in_the_original_image(model):
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(_batch(scale=2.0, hw=(128, 96)), False), mode="predict")
        raw = model.predict(**model.data_preprocessor(_batch(scale=2.0, hw=(128, 96)), False), rescale=False)
    assert len(out) == 2 and all(isinstance(s, DetDataSample) for s in out)
    for sample, unscaled in zip(out, raw):
        pred = sample.pred_instances
        n = len(pred)
        assert 0 < n <= 100
        assert pred.bboxes.shape == (n, 4) and pred.labels.dtype == torch.long
        oh, ow = sample.ori_shape
        assert (oh, ow) == (64, 48)
        assert float(pred.bboxes[:, 0::2].min()) >= 0 and float(pred.bboxes[:, 2].max()) <= ow
        assert float(pred.bboxes[:, 1::2].min()) >= 0 and float(pred.bboxes[:, 3].max()) <= oh
        assert bool(((pred.scores >= 0.05) & (pred.scores <= 1)).all())
        assert bool(((pred.labels >= 0) & (pred.labels < 3)).all())
        assert torch.allclose(pred.bboxes, unscaled.pred_instances.bboxes / 2.0, atol=1e-4)


def test_tensor_mode_returns_raw_head_outputs(model):
    model.eval()
    data = model.data_preprocessor(_batch(), False)
    with torch.no_grad():
        (rpn_cls, rpn_reg), (cls_score, bbox_pred) = model(data["inputs"], mode="tensor")
    assert len(rpn_cls) == 5 and rpn_cls[0].shape == (2, 3, 16, 16) and rpn_reg[0].shape == (2, 12, 16, 16)
    assert cls_score.shape[1] == 4 and bbox_pred.shape == (cls_score.shape[0], 12)


def test_overfits_one_image_with_two_boxes():
    torch.manual_seed(0)
    cfg = small_model_cfg()
    cfg["backbone"]["frozen_stages"] = 4  # train neck and heads only: fast, and enough to fit one image
    model = MODELS.build(cfg).train()
    data = dict(inputs=[make_image((64, 64), BOXES)], data_samples=[make_sample((64, 64), BOXES, LABELS)])
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(40):
        losses = model(**model.data_preprocessor(data, True), mode="loss")
        loss = sum(v for k, v in losses.items() if "loss" in k)
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(loss.item())
    assert sum(history[-5:]) / 5 < 0.4 * history[0], history
    model.eval()
    with torch.no_grad():
        pred = model(**model.data_preprocessor(data, False), mode="predict")[0].pred_instances
    top = pred[:3]
    ious = box_iou(torch.tensor(BOXES), top.bboxes)
    for gt, label in enumerate(LABELS):
        assert bool(((ious[gt] > 0.5) & (top.labels == label)).any()), (top.bboxes, top.labels)


def test_missing_roi_head_is_a_config_error():
    cfg = small_model_cfg()
    del cfg["roi_head"]
    with pytest.raises(ModelConfigError, match=r"^model\.roi_head: is required"):
        MODELS.build(cfg)
