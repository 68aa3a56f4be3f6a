"""auto_scale_lr: the factor (accumulation counted, linear/sqrt/auto rules) and the Runner's scaling of a real build."""
from __future__ import annotations

import itertools
import logging
import math

import pytest
from mmengine.config import Config

from testutils import REPO, data_options
from visdet.engine.lr_scaling import is_lr_free, lr_scaling

SMALL = str(REPO / "configs/faster_rcnn_r18_small.py")
_RUNS = itertools.count()


def test_the_real_batch_counts_processes_batch_and_accumulation():
    scaling = lr_scaling(dict(enable=True, base_batch_size=16), world_size=2, batch_size=2, accumulative_counts=2)
    assert scaling.factor == 0.5
    assert ("real batch 8 (= 2 processes x batch_size 2 x accumulative_counts 2) over base_batch_size 16"
            in scaling.reason)
    assert lr_scaling(dict(enable=False, base_batch_size=16), 2, 2) is None
    assert lr_scaling(None, 2, 2) is None


def test_sqrt_and_auto_rules_follow_the_optimizer():
    on = dict(enable=True, base_batch_size=4, rule="sqrt")
    assert lr_scaling(on, 1, 16).factor == 2.0
    auto = dict(enable=True, base_batch_size=4, rule="auto")
    assert lr_scaling(auto, 1, 16, optimizer_type="AdamW").factor == 2.0  # Adam-like: sqrt, as timm
    assert lr_scaling(auto, 1, 16, optimizer_type="SGD").factor == 4.0  # SGD-like: linear
    assert lr_scaling(auto, 1, 16, optimizer_type="Lamb").factor == 2.0
    prodigy = lr_scaling(auto, 1, 16, optimizer_type="Prodigy")
    assert prodigy.factor == 1.0 and "learning-rate-free" in prodigy.reason
    assert is_lr_free("DAdaptAdam") and not is_lr_free("AdamW")


def _runner(tmp_path, **changes):
    from mmengine.registry import init_default_scope

    from visdet.engine.runner import Runner

    init_default_scope("visdet")
    cfg = Config.fromfile(SMALL)
    cfg.merge_from_dict({k: v for k, v in (o.split("=", 1) for o in data_options(str(tmp_path / "data")))})
    cfg.merge_from_dict(changes)
    cfg.work_dir = str(tmp_path / "work")
    cfg.experiment_name = cfg.visualizer.name = f"scale_lr_{next(_RUNS)}"  # mmengine's visualizer is one per name
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    return runner


def test_the_runner_scales_a_real_build_counting_accumulation_and_logs_why(tmp_path):
    runner = _runner(tmp_path, **{"auto_scale_lr": dict(enable=True, base_batch_size=16),
                                  "train_dataloader.batch_size": 2, "optim_wrapper.accumulative_counts": 4})
    base = runner.cfg.optim_wrapper.optimizer.lr
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    runner.logger.addHandler(handler)  # the Runner's own logger, which it made current
    try:
        runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    finally:
        runner.logger.removeHandler(handler)
    assert [g["lr"] for g in runner.optim_wrapper.optimizer.param_groups] == pytest.approx(
        [base * 0.5] * len(runner.optim_wrapper.optimizer.param_groups))
    text = "\n".join(r.getMessage() for r in records)
    assert "auto_scale_lr: rule='linear': the real batch 8" in text and f"{base:.4g} -> {base * 0.5:.4g}" in text


def test_sqrt_rule_and_an_lr_free_optimizer_on_the_runner(tmp_path):
    runner = _runner(tmp_path, auto_scale_lr=dict(enable=True, base_batch_size=8, rule="sqrt"))
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    lr = runner.cfg.optim_wrapper.optimizer.lr
    assert runner.optim_wrapper.optimizer.param_groups[0]["lr"] == pytest.approx(lr * math.sqrt(2 / 8))
    free = _runner(tmp_path, auto_scale_lr=dict(enable=True, base_batch_size=8, rule="auto"),
                   optim_wrapper=dict(optimizer=dict(_delete_=True, type="Prodigy", lr=1.0, weight_decay=0.0)))
    free.scale_lr(free.optim_wrapper, free.auto_scale_lr)
    assert {g["lr"] for g in free.optim_wrapper.optimizer.param_groups} == {1.0}


def test_preflight_checks_the_rule(tmp_path):
    from visdet.engine.preflight import check_config
    from visdet.errors import ConfigError

    cfg = Config.fromfile(SMALL)
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=16, rule="square")
    with pytest.raises(ConfigError, match=r"auto_scale_lr\.rule: must be one of 'linear', 'sqrt', 'auto'"):
        check_config(cfg)


def test_under_a_flexible_runner_what_its_strategy_would_drop_is_refused():
    from visdet.engine.preflight_sections import check_runtime_sections
    from visdet.errors import ConfigError

    cfg = dict(runner_type="FlexibleRunner", auto_scale_lr=dict(enable=True, base_batch_size=16, rule="sqrt"))
    with pytest.raises(ConfigError, match=r"auto_scale_lr: rule='sqrt' is not applied under runner_type"):
        check_runtime_sections(cfg, training=True)
    cfg = dict(runner_type="FlexibleRunner", auto_scale_lr=dict(enable=True, base_batch_size=16),
               optim_wrapper=dict(accumulative_counts=2))
    with pytest.raises(ConfigError, match="accumulative_counts=2 is not applied"):
        check_runtime_sections(cfg, training=True)
