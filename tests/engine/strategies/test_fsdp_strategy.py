"""FSDP through mmengine's FlexibleRunner and visdet's FSDPStrategy: two CPU processes (gloo)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from testutils import REPO, data_options, dist_train, run_log
from testutils import train_losses as losses
from visdet.engine.strategies import StrategyConfigError, check_strategy_config

FSDP_CONFIG = "configs/faster_rcnn_r18_small_fsdp.py"


def _group_of(checkpoint: dict, name: str) -> dict:
    for group in checkpoint["optimizer"]["param_groups"]:
        if name in group["params"]:
            return group
    raise AssertionError(f"{name} is in no parameter group")


def test_fsdp_two_processes_train_and_resume_keep_param_groups(tmp_path):
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    # flat_decay_mult=0 must hit only real 1-D parameters: built after wrapping, every FSDP shard is 1-D.
    options = ("optim_wrapper.paramwise_cfg.flat_decay_mult=0.0",)
    dist_train(FSDP_CONFIG, work, data, options=("train_cfg.max_epochs=1", *options))
    log = run_log(work)
    assert "Epoch(train) [1][4/4]" in log and all(math.isfinite(v) for v in losses(log))
    first = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=True)  # one ordinary file
    assert first["meta"]["epoch"] == 1 and "rng_state" in first
    assert first["state_dict"]["backbone.conv1.weight"].dim() == 4  # the full, unflattened weights
    assert _group_of(first, "backbone.conv1.weight")["weight_decay"] == pytest.approx(0.05)
    assert _group_of(first, "backbone.bn1.weight")["weight_decay"] == 0.0
    assert {int(s["step"]) for s in first["optimizer"]["state"].values()} == {4}

    dist_train(FSDP_CONFIG, work, data, "--resume", options=("train_cfg.max_epochs=2", *options))
    resumed = run_log(work)
    assert "resumed epoch: 1, iter: 4" in resumed and "Epoch(train) [2][4/4]" in resumed
    second = torch.load(work / "epoch_2.pth", map_location="cpu", weights_only=True)
    assert {int(s["step"]) for s in second["optimizer"]["state"].values()} == {8}  # optimizer state restored
    assert [s["_global_step"] for s in second["param_schedulers"]] == [8, 8]

    # tools/test.py evaluates the full checkpoint on one process, the strategy set aside, every weight loaded.
    evaluated = subprocess.run([sys.executable, "tools/test.py", FSDP_CONFIG, str(work / "epoch_2.pth"),
                                "--work-dir", str(tmp_path / "eval"), "--cfg-options", *data_options(data)],
                               capture_output=True, text=True, cwd=REPO, timeout=600,
                               env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    output = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 0, output[-3000:]
    assert "coco/bbox_mAP:" in evaluated.stdout and "FSDPStrategy is for training" in output
    assert "missing keys" not in output and "unexpected key" not in output


def _cfg(**changes) -> Config:
    cfg = Config.fromfile(FSDP_CONFIG)
    cfg.merge_from_dict(changes)
    return cfg


@pytest.mark.parametrize("changes, key, words", [
    ({"strategy.state_dict_cfg": "local"}, "strategy.state_dict_cfg", "weights_only"),
    ({"strategy.model_wrapper.use_orig_params": False}, "strategy.model_wrapper.use_orig_params", "by parameter name"),
    ({"optim_wrapper.optimizer": dict(_delete_=True, type="Muon", lr=0.02)}, "optim_wrapper.optimizer.type", "shards"),
    ({"strategy.skip_init_weight": True}, "strategy.skip_init_weight", "skip_init_weights"),
    ({"optim_wrapper.clip_grad": dict(type="agc", clip_factor=0.01)}, "optim_wrapper.clip_grad.type", "per-unit"),
])
def test_fsdp_config_mistakes_fail_before_training(changes, key, words):
    with pytest.raises(StrategyConfigError) as info:
        check_strategy_config(_cfg(**changes))
    assert info.value.key == key and words in str(info.value)


def test_the_fsdp_config_passes_the_checks():
    check_strategy_config(_cfg())
