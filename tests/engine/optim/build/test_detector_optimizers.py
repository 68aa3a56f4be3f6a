"""The constructor on the real detector (configs/faster_rcnn_r18_small.py): frozen stages, per-module optimizers."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.structures import InstanceData
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from testutils import REPO
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.structures import DetDataSample

BOXES, LABELS = [[6.0, 8.0, 30.0, 34.0], [36.0, 16.0, 60.0, 58.0]], [0, 2]


@pytest.fixture(scope="module")
def small_cfg() -> Config:
    init_default_scope("visdet")
    return Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py"))


def _detector(cfg: Config, frozen_stages: int = -1) -> nn.Module:
    from visdet.registry import MODELS

    torch.manual_seed(0)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.frozen_stages = frozen_stages
    return MODELS.build(model_cfg)


def _batch(hw: tuple[int, int] = (64, 64)) -> dict:
    """One noise image with a bright box per object, and its annotations."""
    img = torch.randint(0, 60, (3, *hw), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for x1, y1, x2, y2 in BOXES:
        img[:, int(y1):int(y2), int(x1):int(x2)] = 200
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0), flip=False))
    sample.gt_instances = InstanceData(bboxes=torch.tensor(BOXES), labels=torch.tensor(LABELS))
    return dict(inputs=[img], data_samples=[sample])


def _loss(model: nn.Module) -> torch.Tensor:
    batch = _batch()
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode="loss")
    return sum(v for k, v in losses.items() if "loss" in k)


def test_a_stem_unfrozen_after_the_build_trains(small_cfg):
    model = _detector(small_cfg, frozen_stages=1)  # the stem and stage 1, as MMDetection's configs
    assert not model.backbone.conv1.weight.requires_grad
    wrapper = OptimWrapperConstructor(small_cfg.optim_wrapper.to_dict())(model)
    stem, stage1 = model.backbone.conv1.weight, model.backbone.layer1[0].conv1.weight
    in_optimizer = {id(p) for g in wrapper.optimizer.param_groups for p in g["params"]}
    assert {id(stem), id(stage1)} <= in_optimizer
    before_stem, before_stage1 = stem.detach().clone(), stage1.detach().clone()
    wrapper.update_params(_loss(model))  # still frozen: unchanged
    assert torch.equal(stem, before_stem)
    assert torch.equal(stage1, before_stage1)
    # What a progressive-unfreezing hook does mid-run (ResNet.train() re-freezes by frozen_stages):
    # the optimizer needs no rebuild.
    model.backbone.frozen_stages = -1
    model.backbone.requires_grad_(True)
    wrapper.update_params(_loss(model))
    assert not torch.equal(stem, before_stem) and not torch.equal(stage1, before_stage1)
