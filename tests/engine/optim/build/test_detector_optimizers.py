"""The constructor on the real detector (configs/faster_rcnn_r18_small.py): frozen stages, per-module optimizers."""
from __future__ import annotations

import copy
import io

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
    torch.manual_seed(1)  # the samplers draw at random: the same draw for a model and its resumed copy
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


def _per_module_cfg(small_cfg: Config) -> dict:
    cfg = small_cfg.optim_wrapper.to_dict()  # AdamW, lr 3e-4, norm/bias decay 0, clip_grad
    cfg["paramwise_cfg"]["custom_keys"] = {"backbone": dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9,
                                                                           weight_decay=1e-4))}
    return cfg


def test_per_module_optimizer_on_the_detector_trains_and_resumes_exactly(small_cfg):
    from visdet.engine.optim.hybrid.optimizer import HybridOptimizer

    cfg = _per_module_cfg(small_cfg)
    written = copy.deepcopy(cfg)
    model = _detector(small_cfg)
    wrapper = OptimWrapperConstructor(cfg)(model)
    assert cfg == written  # the config is only read
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, HybridOptimizer) and list(optimizer.optimizers) == ["main", "backbone"]
    sgd, adamw = optimizer.optimizers["backbone"], optimizer.optimizers["main"]
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adamw, torch.optim.AdamW)
    in_sgd = {id(p) for g in sgd.param_groups for p in g["params"]}
    assert in_sgd == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for g in adamw.param_groups for p in g["params"]} == {
        id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")}
    # The route's own lr and weight decay, with the type rules still applied (norm_decay_mult=0 in the config).
    bn = next(g for g in sgd.param_groups if any(p is model.backbone.bn1.weight for p in g["params"]))
    conv = next(g for g in sgd.param_groups if any(p is model.backbone.conv1.weight for p in g["params"]))
    assert (bn["lr"], bn["weight_decay"], conv["weight_decay"], conv["momentum"]) == (0.01, 0.0, 1e-4, 0.9)
    assert {g["lr"] for g in adamw.param_groups} == {3e-4}
    for _ in range(2):
        wrapper.update_params(_loss(model))
    assert all(sgd.state[p]["momentum_buffer"] is not None for p in model.backbone.parameters())
    assert all(adamw.state[p]["step"] == 2 for p in model.neck.parameters())

    # Exact resume: a fresh model and wrapper loaded from the checkpoint take the same next step.
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": wrapper.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)  # a safe checkpoint: plain tensors and containers
    saved_model, saved_optim = checkpoint["model"], checkpoint["optim"]
    assert set(saved_optim["optimizers"]) == {"main", "backbone"}
    resumed = _detector(small_cfg)
    resumed.load_state_dict(saved_model)
    resumed_wrapper = OptimWrapperConstructor(_per_module_cfg(small_cfg))(resumed)
    resumed_wrapper.load_state_dict(saved_optim)
    wrapper.update_params(_loss(model))
    resumed_wrapper.update_params(_loss(resumed))
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_muon_with_flattened_kernels_builds_on_a_detector_with_frozen_stages(small_cfg):
    model = _detector(small_cfg, frozen_stages=1)
    cfg = dict(optimizer=dict(type="Muon", lr=0.02, flatten_conv=True, fallback=dict(type="AdamW", lr=1e-3)))
    optimizer = OptimWrapperConstructor(cfg)(model).optimizer
    fallback = {id(p) for g in optimizer.optimizers["fallback"].param_groups for p in g["params"]}
    assert id(model.backbone.layer1[0].conv1.weight) in fallback  # frozen: no 2-D view, the fallback holds it
    matrix_shapes = [tuple(p.shape) for g in optimizer.optimizers["matrix"].param_groups for p in g["params"]]
    assert (128, 64 * 9) in matrix_shapes  # layer2's trainable kernels, as matrices
