"""MMDetection's LearningRateDecayOptimizerConstructor spelling (decay_rate, decay_type, num_layers) on the detector."""
from __future__ import annotations

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from testutils import REPO
from visdet.engine.optim.build.layer_decay_constructor import LearningRateDecayOptimizerConstructor
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.preflight import check_config
from visdet.errors import ConfigError
from visdet.registry import MODELS

SMALL = str(REPO / "configs/faster_rcnn_r18_small.py")
MMDET_STYLE = dict(
    constructor="LearningRateDecayOptimizerConstructor",
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.5, decay_type="stage_wise", num_layers=4),
)


def _group_of(wrapper, param) -> dict:
    return next(g for g in wrapper.optimizer.param_groups if any(p is param for p in g["params"]))


def test_an_mmdet_config_builds_through_mmengines_builder_with_stage_decay_and_mmdets_no_decay():
    init_default_scope("visdet")
    detector = MODELS.build(Config.fromfile(SMALL).model)
    wrapper = build_optim_wrapper(detector, Config(dict(optim_wrapper=MMDET_STYLE)).optim_wrapper)
    backbone = detector.backbone
    stem, stage2 = _group_of(wrapper, backbone.conv1.weight), _group_of(wrapper, backbone.layer2[1].conv1.weight)
    assert stem["lr"] == pytest.approx(1e-3 * 0.5 ** 5) and stem["weight_decay"] == 0.05
    assert stage2["lr"] == pytest.approx(1e-3 * 0.5 ** 3)
    head = _group_of(wrapper, detector.roi_head.bbox_head.fc_cls.weight)
    assert head["lr"] == 1e-3
    # as MMDetection's constructor: 1-D parameters and biases take no weight decay
    assert _group_of(wrapper, backbone.bn1.weight)["weight_decay"] == 0.0
    assert _group_of(wrapper, detector.roi_head.bbox_head.fc_cls.bias)["weight_decay"] == 0.0
    # merged: one group per distinct (lr, weight decay), not one per parameter as MMDetection's
    assert len(wrapper.optimizer.param_groups) == 12


def test_decay_rate_is_required_and_bad_values_name_the_key():
    with pytest.raises(OptimizerConfigError, match="decay_rate"):
        LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type="SGD", lr=0.1)), dict(decay_type="layer_wise"))
    with pytest.raises(OptimizerConfigError, match=r"paramwise_cfg\.layer_decay_type: must be one of"):
        LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type="SGD", lr=0.1)),
                                              dict(decay_rate=0.7, decay_type="layerwise"))
    with pytest.raises(OptimizerConfigError, match="sets both decay_rate"):
        LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type="SGD", lr=0.1)),
                                              dict(decay_rate=0.7, layer_decay=0.7))


def test_preflight_refuses_a_bad_decay_rate_before_training():
    cfg = Config.fromfile(SMALL)
    cfg.optim_wrapper = dict(MMDET_STYLE, paramwise_cfg=dict(decay_rate=1.5, decay_type="layer_wise", num_layers=8))
    with pytest.raises(ConfigError, match=r"optim_wrapper\.paramwise_cfg\.layer_decay: must be in \(0, 1\]"):
        check_config(cfg)
    cfg.optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-3), paramwise_cfg=dict(layer_decay=0.7,
                                                                                        layer_decay_typ="x"))
    with pytest.raises(ConfigError, match="unknown key 'layer_decay_typ'; did you mean 'layer_decay_type'"):
        check_config(cfg)
