"""DeepSpeed through mmengine's FlexibleRunner and visdet's DeepSpeedStrategy.

The multi-process tests train the small detector with two processes on the CPU
(DeepSpeed's CPU accelerator, gloo) through ``tools/dist_train.sh``; CUDA is
hidden from them so they test the same path on any machine. What needs CUDA
(the 1-bit optimizers) is tested only where there is a GPU.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from testutils import REPO, data_options, dist_train, free_port, run_log
from testutils import train_losses as losses
from visdet.engine.strategies import StrategyConfigError, check_strategy_config

ZERO2 = "configs/faster_rcnn_r18_small_deepspeed_zero2.py"
ZERO1 = "configs/faster_rcnn_r18_small_deepspeed_zero1.py"
OFFLOAD = "configs/faster_rcnn_r18_small_deepspeed_zero2_offload.py"
pytest.importorskip("deepspeed")


def load_safe(path: Path) -> dict:
    """A DeepSpeed checkpoint file read as visdet reads it: weights_only=True and DeepSpeed's data classes only."""
    from visdet.engine.strategies.ds_checkpoint import DEEPSPEED_SAFE_GLOBALS

    with torch.serialization.safe_globals(DEEPSPEED_SAFE_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def adam_steps(optim_file: Path) -> set[int]:
    """The Adam step counts in one ZeRO partition's optimizer state."""
    state = load_safe(optim_file)["optimizer_state_dict"]["base_optimizer_state"]["state"]
    return {int(s["step"]) for s in state.values()}


def test_zero2_two_processes_train_checkpoint_and_resume(tmp_path):
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    # 16 images, 2 per process, 2 processes: 4 iterations an epoch.
    dist_train(ZERO2, work, data, options=("train_cfg.max_epochs=1",))
    log = run_log(work)
    assert "Distributed training: True" in log and "DeepSpeedStrategy" in log
    assert "AdamW on cpu: fused implementation" in log  # built by visdet's constructor and registry
    first = losses(log)
    assert "Epoch(train) [1][4/4]" in log and first and all(math.isfinite(v) for v in first)
    ckpt = work / "epoch_1.pth"
    assert ckpt.is_dir() and (work / "last_checkpoint").read_text().strip() == str(ckpt)
    model_states = load_safe(ckpt / "mp_rank_00_model_states.pt")
    assert model_states["global_steps"] == 4 and model_states["meta"]["epoch"] == 1
    assert "rng_state" in model_states  # visdet's RNGStateHook saw the checkpoint
    partitions = sorted(ckpt.glob("zero_pp_rank_*_mp_rank_00_optim_states.pt"))
    assert len(partitions) == 2  # ZeRO: one optimizer partition per process
    assert all(adam_steps(p) == {4} for p in partitions)
    assert not list(work.rglob("*.tmp"))  # atomic writes leave no temporary files

    dist_train(ZERO2, work, data, "--resume", options=("train_cfg.max_epochs=2",))
    resumed = run_log(work)
    assert "resumed epoch: 1, iter: 4" in resumed
    assert "Epoch(train) [1]" not in resumed and "Epoch(train) [2][4/4]" in resumed
    assert all(math.isfinite(v) for v in losses(resumed))
    ckpt2 = work / "epoch_2.pth"
    states2 = load_safe(ckpt2 / "mp_rank_00_model_states.pt")
    assert states2["global_steps"] == 8 and states2["meta"]["iter"] == 8
    # Adam's own step count continued from 4: the optimizer state was restored, not rebuilt.
    assert all(adam_steps(p) == {8} for p in sorted(ckpt2.glob("zero_pp_rank_*_optim_states.pt")))
    # The scheduler continued too: last_step counts every iteration of both runs.
    assert [s["_global_step"] for s in states2["param_schedulers"]] == [8, 8]


def test_zero1_two_processes_train(tmp_path):
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    dist_train(ZERO1, work, data, options=("train_cfg.max_epochs=1", "default_hooks.checkpoint.interval=2"))
    log = run_log(work)
    assert "Epoch(train) [1][4/4]" in log and all(math.isfinite(v) for v in losses(log))
    assert "'stage': 1" in log or "stage=1" in log


def test_zero2_offload_runs_deepspeed_cpu_adam(tmp_path):
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    dist_train(OFFLOAD, work, data, options=("train_cfg.max_epochs=1",))
    log = run_log(work)
    assert "Epoch(train) [1][4/4]" in log and all(math.isfinite(v) for v in losses(log))
    partitions = sorted((work / "epoch_1.pth").glob("zero_pp_rank_*_optim_states.pt"))
    assert len(partitions) == 2 and all(adam_steps(p) == {4} for p in partitions)


def _cfg(config: str = ZERO2, **changes) -> Config:
    cfg = Config.fromfile(str(REPO / config))
    cfg.merge_from_dict(changes)
    return cfg


@pytest.mark.parametrize("changes, key, words", [
    ({"strategy.zero_optimization.bogus": 1}, "strategy.zero_optimization", "bogus"),
    ({"strategy.zero_optimization.stage": 5}, "strategy.zero_optimization.stage", "unknown ZeRO stage 5"),
    ({"strategy.gradient_cliping": 1.0}, "strategy.gradient_cliping", "gradient_clipping"),
    ({"strategy.type": "DeepSpeedStrateg"}, "strategy.type", "DeepSpeedStrategy"),
    ({"optim_wrapper.type": "OptimWrapper"}, "optim_wrapper.type", "DeepSpeedOptimWrapper"),
    ({"optim_wrapper.clip_grad": dict(max_norm=10.0)}, "optim_wrapper.clip_grad", "gradient_clipping"),
    ({"strategy.zero_optimization.offload_optimizer": dict(device="cpu")}, "optim_wrapper.optimizer.type",
     "DeepSpeedCPUAdam"),
    ({"runner_type": "Runner"}, "strategy", "runner_type='FlexibleRunner'"),
])
def test_deepspeed_config_mistakes_fail_before_training(changes, key, words):
    with pytest.raises(StrategyConfigError) as info:
        check_strategy_config(_cfg(**changes))
    assert info.value.key == key and words in str(info.value)


def test_the_deepspeed_configs_pass_the_checks():
    for config in (ZERO1, ZERO2, OFFLOAD):
        check_strategy_config(_cfg(config))


def test_missing_deepspeed_is_a_config_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(StrategyConfigError, match="pip install 'deepspeed"):
        check_strategy_config(_cfg())


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the 1-bit optimizers can be built")
def test_onebit_adam_on_cpu_is_refused_with_the_reason():
    cfg = _cfg(**{"strategy.zero_optimization.stage": 0,
                  "optim_wrapper.optimizer": dict(_delete_=True, type="OnebitAdam", lr=1e-4, freeze_step=2)})
    with pytest.raises(StrategyConfigError, match="compressed allreduce has no CPU implementation") as info:
        check_strategy_config(cfg)
    assert info.value.key == "optim_wrapper.optimizer.type"


def test_train_tool_reports_a_strategy_mistake_in_one_line(tmp_path):
    options = ["strategy.zero_optimization.offload_optimizer.device=cpu"]
    result = subprocess.run([sys.executable, "tools/train.py", ZERO2, "--work-dir", str(tmp_path / "w"),
                             "--cfg-options", *options], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("visdet:")]
    assert lines == [lines[0]] and "offload_optimizer" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.cuda  # and cupy, which tools/cuda_check.sh installs
def test_onebit_adam_trains_inside_the_deepspeed_engine_on_a_gpu(tmp_path):
    pytest.importorskip("cupy")
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(free_port())}
    options = ["strategy.zero_optimization.stage=0", "optim_wrapper.optimizer.type=OnebitAdam",
               "optim_wrapper.optimizer.freeze_step=2", "train_cfg.max_epochs=1"]
    result = subprocess.run(["bash", "tools/dist_train.sh", ZERO2, "1", "--work-dir", str(work), "--cfg-options",
                             *data_options(data), *options, "optim_wrapper.optimizer.weight_decay=0.0"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    log = run_log(work)
    assert "Epoch(train) [1]" in log and all(math.isfinite(v) for v in losses(log))


@pytest.mark.parametrize("name, refused", [("OnebitAdam", False), ("ZeroOneAdam", False), ("ZenFlowCPUAdam", True)])
def test_train_checks_let_deepspeed_build_the_1bit_family_on_a_gpu(monkeypatch, name, refused):
    """With CUDA and a launched DeepSpeed run, the engine builds the 1-bit optimizers: the checks must not
    refuse them for 'needs a DeepSpeed engine'; ZenFlow's, which the strategy does not hand over, stay refused."""
    from visdet.engine.launch import prepare_strategy, set_launcher
    from visdet.engine.preflight import check_config
    from visdet.engine.strategies.lookup import register
    from visdet.errors import ConfigError

    register()  # import the strategies (and through mmengine the optimizer packages) before CUDA is faked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what a GPU machine reports
    cfg = _cfg(**{"strategy.zero_optimization.stage": 0,
                  "optim_wrapper.optimizer": dict(_delete_=True, type=name, lr=1e-4, weight_decay=0.05)})
    set_launcher(cfg, "pytorch")
    prepare_strategy(cfg)
    if refused:
        with pytest.raises(ConfigError, match="DeepSpeed engine"):
            check_config(cfg)
    else:
        check_config(cfg)
