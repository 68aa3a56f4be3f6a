"""Every section the Runner reads, checked before anything is built (visdet.engine.preflight_sections).

Unit tests on the small shipped config with the overrides a user would pass as --cfg-options;
tests/engine/test_preflight_tools.py runs the same mistakes through tools/train.py.
"""
from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger

from visdet.engine.preflight import check_config
from visdet.engine.preflight_sections import schedule_warnings
from visdet.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SMALL = str(REPO / "configs" / "faster_rcnn_r18_small.py")


def _small(**options) -> Config:
    cfg = Config.fromfile(SMALL)
    cfg.merge_from_dict(options)
    return cfg


def _error(cfg: Config, training: bool = True) -> str:
    with pytest.raises(ConfigError) as info:
        check_config(cfg, training)
    return str(info.value)


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """WARNING messages logged on mmengine's current logger (print_log(logger='current'))."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _check_warnings(cfg: Config, training: bool = True) -> list[str]:
    with _warnings() as messages:
        check_config(cfg, training)
    return messages


# --- item 9: every section, with did-you-mean -----------------------------------------------

@pytest.mark.parametrize("options, key, fix", [
    ({"train_cfg.max_epoch": 1}, "train_cfg.max_epoch", "did you mean 'max_epochs'"),
    ({"train_dataloader.batch_szie": 4}, "train_dataloader.batch_szie", "did you mean 'batch_size'"),
    ({"auto_scale_lr.enabled": True}, "auto_scale_lr.enabled", "did you mean 'enable'"),
    ({"auto_scale_lr.base_batch_size": None}, "auto_scale_lr.base_batch_size", "positive integer"),
    ({"auto_scale_lr": dict(enable=True, base_batch_size=0)}, "auto_scale_lr.base_batch_size", "positive integer"),
    ({"auto_scale_lr": dict(_delete_=True, enable=True)}, "auto_scale_lr.base_batch_size", "needs base_batch_size"),
    ({"model.train_cfg.rcnn.sampler.nmu": 64}, "model.train_cfg.rcnn.sampler.nmu", "did you mean 'num'"),
    ({"model.train_cfg.rpn.assigner.pos_iou_th": 0.7}, "model.train_cfg.rpn.assigner.pos_iou_th",
     "did you mean 'pos_iou_thr'"),
    ({"model.roi_head.bbox_head.num_class": 4}, "model.roi_head.bbox_head.num_class", "did you mean 'num_classes'"),
    ({"model.roi_head.bbox_roi_extractor.out_chanels": 64}, "model.roi_head.bbox_roi_extractor.out_chanels",
     "did you mean 'out_channels'"),
    ({"model.rpn_head.anchor_generator.scale": [8]}, "model.rpn_head.anchor_generator.scale",
     "did you mean 'scales'"),
    ({"model.rpn_head.loss_cls.use_sigmod": True}, "model.rpn_head.loss_cls.use_sigmod",
     "did you mean 'use_sigmoid'"),
    ({"model.roi_head.bbox_head.bbox_coder.target_std": [1, 1, 1, 1]},
     "model.roi_head.bbox_head.bbox_coder.target_std", "did you mean 'target_stds'"),
    ({"model.rpn_head.bbox_coder.type": "DeltaXYWHBoxCoder"}, "model.rpn_head.bbox_coder.type",
     "'DeltaXYWHBBoxCoder'"),
    ({"model.train_cfg.rcn": dict(pos_weight=-1)}, "model.train_cfg.rcn", "did you mean 'rcnn'"),
    ({"model.train_cfg.rpn.allowed_boarder": 0}, "model.train_cfg.rpn.allowed_boarder",
     "did you mean 'allowed_border'"),
    ({"model.test_cfg.rcnn.score_thresh": 0.1}, "model.test_cfg.rcnn.score_thresh", "did you mean 'score_thr'"),
    ({"model.test_cfg.rpn.max_per_image": 10}, "model.test_cfg.rpn.max_per_image", "did you mean 'max_per_img'"),
    ({"model.train_cfg.rpn_proposal.nms.iou_thr": 0.7}, "model.train_cfg.rpn_proposal.nms.iou_thr",
     "did you mean 'iou_threshold'"),
    ({"env_cfg.cudnn_benchmrk": True}, "env_cfg.cudnn_benchmrk", "did you mean 'cudnn_benchmark'"),
    ({"env_cfg.mp_cfg.mp_start_methd": "fork"}, "env_cfg.mp_cfg.mp_start_methd", "did you mean 'mp_start_method'"),
    ({"env_cfg.mp_cfg.mp_start_method": "frok"}, "env_cfg.mp_cfg.mp_start_method", "did you mean 'fork'"),
    ({"env_cfg.dist_cfg.timeot": 60}, "env_cfg.dist_cfg.timeot", "did you mean 'timeout'"),
    ({"randomness.sed": 0}, "randomness.sed", "did you mean 'seed'"),
    ({"log_processor.window_sise": 3}, "log_processor.window_sise", "did you mean 'window_size'"),
    ({"visualizer.nmae": "x"}, "visualizer.nmae", "did you mean 'name'"),
    ({"visualizer.vis_backends": [dict(type="LocalVisBackend", save_dri="x")]},
     "visualizer.vis_backends[0].save_dri", "did you mean 'save_dir'"),
    ({"visualizer.vis_backends": [dict(type="TensorBoardVisBackend")]}, "visualizer.vis_backends[0].type",
     "'TensorboardVisBackend'"),
    ({"train_dataloader.collate_fn": dict(type="pseudo_colate")}, "train_dataloader.collate_fn.type",
     "did you mean 'pseudo_collate'"),
    ({"train_dataloader.sampler.shufle": True}, "train_dataloader.sampler.shufle", "did you mean 'shuffle'"),
    ({"train_dataloader.shuffle": True}, "train_dataloader.shuffle", "sampler=dict(type='DefaultSampler'"),
    ({"val_dataloader.num_workers": -1}, "val_dataloader.num_workers", "integer >= 0"),
    ({"custom_hooks": [dict(type="CurvePlotHok")]}, "custom_hooks[0].type", "'CurvePlotHook'"),
])
def test_a_mistake_in_any_section_names_its_key_and_the_fix(options, key, fix):
    message = _error(_small(**options))
    assert message.startswith(f"{key}:"), message
    assert fix in message, message


def test_train_loop_shorthands_the_runner_accepts_pass():
    # Runner.build_train_loop: without 'type', by_epoch picks mmengine's Epoch/IterBasedTrainLoop.
    cfg = _small()
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
    check_config(cfg)
    cfg.train_cfg = dict(by_epoch=False, max_iters=8, val_interval=4)
    check_config(cfg)
    cfg.train_cfg = dict(by_epoch=False, max_epochs=2)
    assert _error(cfg).startswith("train_cfg.max_epochs: IterBasedTrainLoop has no argument 'max_epochs'; "
                                  "did you mean 'max_iters'?")


@pytest.mark.parametrize("train_cfg, key, text", [
    (dict(type="EpochBasedTrainLoop", by_epoch=True, max_epochs=2), "train_cfg.by_epoch", "not both"),
    (dict(max_epochs=2), "train_cfg", "type='EpochBasedTrainLoop'"),
    (dict(type="EpochBasedTrainLoop"), "train_cfg", "needs 'max_epochs'"),
    (dict(type="EpochBasedTrainLoop", max_epochs=0), "train_cfg.max_epochs", "positive integer"),
    (dict(type="EpochBasedTrainLoop", max_epochs=2.5), "train_cfg.max_epochs", "positive integer"),
    (dict(type="EpochBasedTrainLop", max_epochs=2), "train_cfg.type", "'EpochBasedTrainLoop'"),
])
def test_train_loop_mistakes(train_cfg, key, text):
    cfg = _small()
    cfg.train_cfg = train_cfg
    message = _error(cfg)
    assert message.startswith(f"{key}:") and text in message, message


def test_a_partial_validation_setup_names_what_is_missing():
    message = _error(_small(val_evaluator=None))
    assert message.startswith("val_evaluator:") and "val_dataloader, val_cfg, val_evaluator together" in message


def test_nested_parts_of_mmdetection_configs_still_pass():
    # mmdet's 'debug' key and the init_cfg of a pretrained backbone are accepted.
    cfg = _small(load_from=None)
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint="torchvision://resnet18")
    check_config(cfg)
    cfg.model.backbone.init_cfg = dict(type="Pretrained", chekpoint="x")
    assert "did you mean 'checkpoint'" in _error(cfg)


def _cfg_get_calls() -> set[tuple[str, str]]:
    """(config path, key) of the cfg_get(cfg, 'key', PATH) calls in visdet/models whose PATH is a string
    or a variable assigned one (a path passed in as an argument, as in RPNHead.predict_by_feat, is not followed)."""
    found = set()
    for path in (REPO / "visdet" / "models").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {t.id: node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "cfg_get" and len(node.args) >= 3:
                name, where = node.args[1], node.args[2]
                where = where.value if isinstance(where, ast.Constant) else names.get(getattr(where, "id", ""))
                if isinstance(name, ast.Constant) and isinstance(where, str):
                    found.add((where, name.value))
    return found


def test_the_train_and_test_cfg_tables_cover_every_key_the_heads_read():
    # The tables are hand-written (the heads read plain dicts); this keeps them in step with the code.
    from visdet.engine.preflight_sections import TWO_STAGE_CFG_KEYS

    calls = _cfg_get_calls()
    assert calls, "no cfg_get calls found: the scan is broken"
    for path, name in calls:
        if not path.startswith("model.train_cfg.") and not path.startswith("model.test_cfg."):
            continue
        _, section, part = path.split(".")
        assert name in TWO_STAGE_CFG_KEYS[section][part], (path, name)


# --- item 10: num_classes against the data set -------------------------------------------------

@pytest.mark.parametrize("num_classes", [80, 2])
def test_num_classes_that_disagree_with_the_data_are_refused(num_classes):
    message = _error(_small(**{"model.roi_head.bbox_head.num_classes": num_classes}))
    assert message.startswith("model.roi_head.bbox_head.num_classes:"), message
    assert f"is {num_classes}" in message and "4 classes" in message
    assert "rectangle, ellipse, triangle, cross" in message and "num_classes=4" in message


def test_num_classes_against_the_dataset_class_default():
    cfg = _small()
    cfg.train_dataloader.dataset.pop("metainfo")  # CocoDataset's METAINFO: COCO's 80 classes
    message = _error(cfg)
    assert "is 4" in message and "80 classes" in message and "CocoDataset.METAINFO" in message


def test_num_classes_is_checked_against_the_test_data_for_evaluation():
    cfg = _small(**{"model.roi_head.bbox_head.num_classes": 3})
    assert "the test data set has 4 classes" in _error(cfg, training=False)


# --- item 14: the schedule against the loop's length ---------------------------------------------

def test_the_shipped_config_logs_no_schedule_warning():
    assert _check_warnings(_small()) == []


def test_a_longer_run_than_the_schedule_warns_with_the_fix():
    messages = _check_warnings(_small(**{"train_cfg.max_epochs": 3}))
    assert len(messages) == 1, messages
    message = messages[0]
    assert message.startswith("param_scheduler[1].end: the schedule ends at epoch 2, but training runs 3 epochs")
    assert "train_cfg.max_epochs=3" in message and "param_scheduler.1.end=3" in message


def test_the_suggested_fix_silences_the_warning():
    cfg = _small(**{"train_cfg.max_epochs": 3})
    cfg.merge_from_dict({"param_scheduler.1.end": 3})  # what --cfg-options param_scheduler.1.end=3 does
    assert _check_warnings(cfg) == []


def test_the_override_docs_training_md_shows_warns_on_the_main_config():
    # docs/training.md: --cfg-options optim_wrapper.optimizer.lr=1e-4 train_cfg.max_epochs=4 (the config has 5).
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py"))
    cfg.merge_from_dict({"optim_wrapper.optimizer.lr": 1e-4, "train_cfg.max_epochs": 4})
    messages = schedule_warnings(cfg)
    assert len(messages) == 1 and messages[0].startswith("param_scheduler[1].end: the schedule ends at epoch 5")
    assert "cut off" in messages[0] and "param_scheduler.1.end=4" in messages[0]
    cfg.merge_from_dict({"param_scheduler.1.end": 4})
    assert schedule_warnings(cfg) == []


def test_a_schedule_cut_off_by_a_shorter_run_warns():
    messages = _check_warnings(_small(**{"train_cfg.max_epochs": 1}))
    assert len(messages) == 1 and "cut off" in messages[0] and "param_scheduler[1].end" in messages[0]


def test_iteration_schedules_against_an_iteration_loop():
    cfg = _small()
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=100, val_interval=50)
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=10),
                           dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=80)]
    messages = _check_warnings(cfg)
    assert len(messages) == 1 and "param_scheduler[1].end" in messages[0]
    assert "ends at iteration 80" in messages[0] and "train_cfg.max_iters=100" in messages[0]
    cfg.param_scheduler = cfg.param_scheduler[:1]  # a warmup alone: training goes on at the base lr
    assert _check_warnings(cfg) == []
    cfg.param_scheduler[0].end = 200  # a warmup longer than training is cut off
    assert "cut off" in _check_warnings(cfg)[0]
    cfg.param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=False, begin=0, T_max=100)]
    # end omitted: INF, it follows the loop
    assert _check_warnings(cfg) == []


def test_evaluation_logs_no_schedule_warning():
    assert _check_warnings(_small(**{"train_cfg.max_epochs": 3}), training=False) == []


# --- item 15: frozen random stages -------------------------------------------------------------

def test_frozen_stages_without_pretrained_weights_warn():
    messages = _check_warnings(_small(**{"model.backbone.frozen_stages": 1}))
    assert len(messages) == 1 and messages[0].startswith("model.backbone.frozen_stages: is 1")
    assert "stay random" in messages[0] and "frozen_stages=-1" in messages[0]


def test_norm_eval_without_pretrained_weights_warns():
    messages = _check_warnings(_small(**{"model.backbone.norm_eval": True}))
    assert len(messages) == 1 and messages[0].startswith("model.backbone.norm_eval: is True")


@pytest.mark.parametrize("source", ["load_from", "init_cfg"])
def test_frozen_stages_with_pretrained_weights_are_fine(source):
    cfg = _small(**{"model.backbone.frozen_stages": 1})
    if source == "load_from":
        cfg.load_from = "work_dirs/some_run/epoch_12.pth"
    else:
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint="torchvision://resnet18")
    assert _check_warnings(cfg) == []


# --- data set wrappers (RepeatDataset...) are looked through ---------------------------------------

def _wrapped() -> Config:
    cfg = _small()
    cfg.train_dataloader.dataset = dict(type="RepeatDataset", times=2, dataset=cfg.train_dataloader.dataset)
    return cfg


def test_a_wrapped_dataset_is_checked_inside():
    cfg = _wrapped()
    check_config(cfg)
    cfg.train_dataloader.dataset.dataset.pipeline[2].type = "Resise"
    assert _error(cfg).startswith("train_dataloader.dataset.dataset.pipeline[2].type:")


def test_num_classes_against_a_wrapped_dataset():
    cfg = _wrapped()
    cfg.model.roi_head.bbox_head.num_classes = 80
    assert "train_dataloader.dataset.dataset.metainfo.classes" in _error(cfg)


# --- top-level values the Runner passes on as they are ---------------------------------------------

@pytest.mark.parametrize("options, key, text", [
    ({"log_level": "INOF"}, "log_level", "did you mean 'INFO'"),
    ({"resume": "yes"}, "resume", "True or False"),
    ({"compile": dict(bakend="eager")}, "compile.bakend", "did you mean 'backend'"),
    ({"param_scheduler.1.end": 0}, "param_scheduler[1].end", "larger than begin"),
    ({"param_scheduler.1.end": "2"}, "param_scheduler[1].end", "number >= 0"),
    ({"param_scheduler.0.convert_to_iter_based": True}, "param_scheduler[0].convert_to_iter_based",
     "needs by_epoch=True"),
])
def test_top_level_values(options, key, text):
    message = _error(_small(**options))
    assert message.startswith(f"{key}:") and text in message, message
