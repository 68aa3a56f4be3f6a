"""MMDetection's scope read as visdet's (unless MMDetection is installed), and every missing type in one message."""
from __future__ import annotations

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from visdet.engine import mmdet_compat
from visdet.engine.launch import load_config
from visdet.engine.preflight import check_config
from visdet.errors import ConfigError
from visdet.models.detectors.faster_rcnn import FasterRCNN

SMALL = "configs/faster_rcnn_r18_small.py"


def mmdet_scoped() -> Config:
    """The small config as an MMDetection user writes it: mmdet scope, an 'mmdet.' type and a _scope_."""
    cfg = Config.fromfile(SMALL)
    cfg.default_scope = "mmdet"
    cfg.model.type = "mmdet.FasterRCNN"
    cfg.model.rpn_head["_scope_"] = "mmdet"
    return cfg


def test_default_scope_mmdet_builds_visdets_model(info_records):
    cfg = mmdet_scoped()
    assert mmdet_compat.translate_mmdet_scope(cfg)
    assert (cfg.default_scope, cfg.model.type, cfg.model.rpn_head["_scope_"]) == ("visdet", "FasterRCNN", "visdet")
    assert any("default_scope='mmdet'" in r.getMessage() and "model.type" in r.getMessage() for r in info_records)
    # visdet's own hooks are in it already; an MMDetection runtime gets the one that keeps checkpoints plain.
    assert [h["type"] for h in cfg.custom_hooks].count("PlainCheckpointHook") == 1
    cfg.custom_hooks = [dict(type="CurvePlotHook")]
    assert mmdet_compat.add_plain_checkpoints(cfg)
    assert [h["type"] for h in cfg.custom_hooks] == ["CurvePlotHook", "PlainCheckpointHook"]
    assert not mmdet_compat.add_plain_checkpoints(cfg)
    check_config(cfg)
    # What the Runner does: build from mmengine's root registry under the config's default scope.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MMENGINE_MODELS.build(cfg.model)
    assert isinstance(model, FasterRCNN)


def test_untranslated_the_runner_would_fail():
    """The failure the translation removes: mmengine looks in its own registry for 'mmdet' names."""
    cfg = Config.fromfile(SMALL)
    with DefaultScope.overwrite_default_scope("mmdet"), pytest.raises(KeyError, match="mmengine::model"):
        MMENGINE_MODELS.build(cfg.model)


def test_untranslated_config_is_refused_at_check_time_with_the_fix():
    with pytest.raises(ConfigError, match="default_scope='visdet'") as caught:
        check_config(mmdet_scoped())
    assert caught.value.key == "default_scope"


def test_load_config_translates(tmp_path):
    path = tmp_path / "mmdet_style.py"
    path.write_text(f"_base_ = '{(mmdet_compat.__file__.rsplit('/visdet/', 1)[0])}/{SMALL}'\ndefault_scope = 'mmdet'\n")
    cfg = load_config(str(path))
    assert cfg.default_scope == "visdet"


def test_left_to_mmdetection_when_it_is_installed(monkeypatch):
    monkeypatch.setattr(mmdet_compat, "mmdet_installed", lambda: True)
    cfg = mmdet_scoped()
    assert not mmdet_compat.translate_mmdet_scope(cfg)
    assert (cfg.default_scope, cfg.model.type) == ("mmdet", "mmdet.FasterRCNN")
    mmdet_compat.check_scope(cfg)  # not refused either
    cfg.model.backbone.type, cfg.model.neck.type = "mmdet.ResNeXt", "mmdet.PAFPN"  # MMDetection's to resolve
    mmdet_compat.check_known_types(cfg)


def test_every_missing_type_in_one_message():
    cfg = Config.fromfile(SMALL)
    cfg.model.backbone.type = "ResNeXt"
    cfg.model.roi_head.bbox_head.loss_bbox.type = "GIoULoss"
    cfg.train_dataloader.dataset.pipeline.insert(2, dict(type="PhotoMetricDistortion"))
    cfg.default_hooks["sync"] = dict(type="SyncNormHook")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert message.startswith("4 types in this config are not in visdet")
    for line in ("model.backbone.type: 'ResNeXt' (use ResNet)",
                 "model.roi_head.bbox_head.loss_bbox.type: 'GIoULoss' (use L1Loss or SmoothL1Loss)",
                 "train_dataloader.dataset.pipeline[2].type: 'PhotoMetricDistortion' (visdet's transforms: ",
                 "default_hooks.sync.type: 'SyncNormHook' (did you mean 'SyncBuffersHook'"):  # closest name first
        assert line in message, message
    assert "visdet's hooks: CheckpointHook" in message


def test_one_missing_type_keeps_the_did_you_mean():
    cfg = Config.fromfile(SMALL)
    cfg.model.neck.type = "FPNN"
    with pytest.raises(ConfigError, match="did you mean 'FPN'"):
        check_config(cfg)


def test_a_known_config_names_no_missing_type():
    assert mmdet_compat.missing_types(load_config("configs/mmdet/faster-rcnn_r50_fpn_1x_coco.py")) == []


def test_a_downstream_projects_scope_is_searched_too():
    """Types registered in a project's own registries (default_scope='myproj') are not reported missing."""
    import uuid

    from mmengine.hooks import Hook
    from mmengine.registry import Registry

    from visdet.registry import HOOKS, MODELS

    scope = f"proj{uuid.uuid4().hex[:8]}"
    hooks = Registry("hook", parent=HOOKS, scope=scope)
    models = Registry("model", parent=MODELS, scope=scope)
    hooks.register_module("ProjHook", module=type("ProjHook", (Hook,), {}))
    models.register_module("ProjLoss", module=type("ProjLoss", (), {}))
    cfg = Config.fromfile(SMALL)
    cfg.default_hooks["proj"] = dict(type="ProjHook")
    cfg.model.roi_head.bbox_head.loss_bbox.type = "ProjLoss"
    assert [name for _, name, _ in mmdet_compat.missing_types(cfg)] == ["ProjLoss", "ProjHook"]  # model first
    cfg.default_scope = scope
    assert mmdet_compat.missing_types(cfg) == []
    cfg.default_scope = "visdet"
    cfg.default_hooks["proj"]["_scope_"] = scope
    assert [name for _, name, _ in mmdet_compat.missing_types(cfg)] == ["ProjLoss"]
