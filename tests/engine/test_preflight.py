"""Whole-config checks run before the Runner builds anything: one clear ConfigError per mistake."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from visdet.engine.preflight import check_config
from visdet.engine.preflight_sections import frozen_backbone_warnings, schedule_warnings
from visdet.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.py"))


def _small() -> Config:
    return Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes(path):
    check_config(Config.fromfile(str(path)))
    check_config(Config.fromfile(str(path)), training=False)  # what tools/test.py checks
    # Their schedules end with training and nothing random is frozen: no warnings either.
    assert schedule_warnings(Config.fromfile(str(path))) == []
    assert frozen_backbone_warnings(Config.fromfile(str(path))) == []


def _error(cfg: Config) -> str:
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    return str(info.value)


def test_misspelt_top_level_key_is_refused_not_ignored():
    cfg = _small()
    cfg["optim_wraper"] = cfg.pop("optim_wrapper")
    message = _error(cfg)
    assert "optim_wraper" in message and "did you mean 'optim_wrapper'" in message


def test_helper_variables_at_top_level_are_fine():
    cfg = _small()
    cfg["my_data_root"] = "x"  # like data_root / train_pipeline in MMDetection configs
    check_config(cfg)


def test_unknown_model_type_names_the_key_and_close_names():
    cfg = _small()
    cfg.model.type = "FasterRCN"
    message = _error(cfg)
    assert message.startswith("model.type:") and "'FasterRCNN'" in message


def test_unknown_backbone_type_names_the_key():
    cfg = _small()
    cfg.model.backbone.type = "ResNext"
    message = _error(cfg)
    assert message.startswith("model.backbone.type:") and "ResNet" in message


def test_misspelt_backbone_argument_names_the_key_and_the_fix():
    cfg = _small()
    cfg.model.backbone["deph"] = cfg.model.backbone.pop("depth")
    message = _error(cfg)
    assert message.startswith("model.backbone.deph:") and "did you mean 'depth'" in message


def test_unknown_transform_names_its_position():
    cfg = _small()
    cfg.train_dataloader.dataset.pipeline[2].type = "Resise"
    message = _error(cfg)
    assert message.startswith("train_dataloader.dataset.pipeline[2].type:") and "'Resize'" in message


def test_misspelt_dataset_argument_names_the_key_and_the_fix():
    cfg = _small()
    cfg.train_dataloader.dataset["ann_fle"] = cfg.train_dataloader.dataset.pop("ann_file")
    message = _error(cfg)
    assert message.startswith("train_dataloader.dataset.ann_fle:") and "'ann_file'" in message


def test_misspelt_hook_argument_is_refused():
    cfg = _small()
    cfg.default_hooks.checkpoint["intervall"] = 1
    assert _error(cfg).startswith("default_hooks.checkpoint.intervall:")


def test_unknown_metric_type():
    cfg = _small()
    cfg.val_evaluator.type = "COCOMetric"
    assert "'CocoMetric'" in _error(cfg)


def test_optimizer_mistakes_surface_before_any_model_is_built():
    cfg = _small()
    cfg.optim_wrapper.optimizer["learning_rate"] = 1e-3
    message = _error(cfg)
    assert message.startswith("optim_wrapper.optimizer:") and "did you mean 'lr'" in message


def test_missing_essentials_are_named():
    cfg = _small()
    cfg.pop("train_dataloader")
    assert "'train_dataloader'" in _error(cfg)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="FusedLamb runs where there is CUDA")
def test_evaluation_checks_leave_the_optimizer_out():
    cfg = _small()
    cfg.optim_wrapper.optimizer = dict(type="FusedLamb", lr=1e-3)  # needs CUDA: refused for training here
    assert "needs a CUDA device" in _error(cfg)
    check_config(cfg, training=False)  # tools/test.py never builds the optimizer
    cfg.pop("test_evaluator")
    with pytest.raises(ConfigError, match="evaluation needs model, test_dataloader and test_evaluator"):
        check_config(cfg, training=False)
