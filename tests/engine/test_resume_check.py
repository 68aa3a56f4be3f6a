"""--resume with an optimizer the checkpoint was not saved with: refused before training, or started fresh on
request."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from testutils import REPO, SmallNet, data_options, run_log, train_steps
from visdet.engine.resume_check import fresh_optimizer_requested, optimizer_mismatch
from visdet.errors import ConfigError

SMALL = "configs/faster_rcnn_r18_small.py"
SGD = ("optim_wrapper.optimizer.type=SGD", "optim_wrapper.optimizer.momentum=0.9", "optim_wrapper.optimizer.lr=0.02")
NOISE = ("[real_accelerator.py",)  # DeepSpeed's import banner, not visdet's


def _train(work_dir: Path, data: Path, *options: str, resume: Path | None = None) -> subprocess.CompletedProcess:
    flags = ["--resume", str(resume)] if resume is not None else []
    return subprocess.run(
        [sys.executable, "tools/train.py", SMALL, "--work-dir", str(work_dir), *flags, "--cfg-options",
         *data_options(str(data)), *options],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def adamw_epoch_1(tmp_path_factory) -> tuple[Path, Path]:
    """epoch_1.pth of the small config trained with its AdamW for one of its two epochs, and the data root."""
    base = tmp_path_factory.mktemp("adamw")
    work_dir, data = base / "work", base / "data"
    result = _train(work_dir, data, "train_cfg.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir / "epoch_1.pth", data


def _refused(result: subprocess.CompletedProcess, checkpoint: Path) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not any(n in line for n in NOISE)]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("visdet: configuration error: optim_wrapper.optimizer: the optimizer state in checkpoint")
    assert f"load_from='{checkpoint}' without --resume" in line and "resume_optimizer=False" in line
    assert "resumed epoch" not in result.stdout and "Epoch(train)" not in result.stdout  # before any iteration
    return line


def test_resuming_adamw_state_with_sgd_is_refused_before_training(adamw_epoch_1, tmp_path):
    checkpoint, data = adamw_epoch_1
    line = _refused(_train(tmp_path / "w", data, *SGD, resume=checkpoint), checkpoint)
    assert "differs from the config's optimizer (SGD; the checkpoint's was AdamW)" in line
    assert "momentum" in line and "betas" in line
    assert not list((tmp_path / "w").glob("*.pth"))


def test_resuming_with_another_param_group_layout_is_refused(adamw_epoch_1, tmp_path):
    # norm_decay_mult=1.0 moves the norm weights into the decayed group: same optimizer, other groups.
    checkpoint, data = adamw_epoch_1
    line = _refused(_train(tmp_path / "w", data, "optim_wrapper.paramwise_cfg.norm_decay_mult=1.0",
                           resume=checkpoint), checkpoint)
    assert "parameter group 0 holds 35 parameters, the config's 75" in line and "paramwise_cfg" in line


def _logged_lrs(log: str) -> dict[int, float]:
    return {int(i): float(lr) for i, lr in re.findall(r"Epoch\(train\) \[2\]\[(\d+)/8\].*? lr: (\S+)", log)}


@pytest.mark.filterwarnings(r"ignore:Detected call of `scheduler.step\(\)`")
def test_resume_optimizer_false_resumes_model_and_schedule_with_a_fresh_optimizer(adamw_epoch_1, tmp_path):
    checkpoint, data = adamw_epoch_1
    work_dir = tmp_path / "w"
    result = _train(work_dir, data, *SGD, "resume_optimizer=False", resume=checkpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    log = run_log(work_dir)
    assert "resumed epoch: 1, iter: 8" in log and "Epoch(train) [1]" not in log
    assert "resume_optimizer=False: resumed the model, epoch 1, iteration 8" in log and "(SGD) starts fresh" in log
    # The learning rate is SGD's schedule at iterations 10, 12, ... (not AdamW's 3e-4 carried over by the
    # saved scheduler state): the config's LinearLR + cosine, stepped as the Runner steps them.
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.02, momentum=0.9)
    schedulers = [LinearLR(optimizer, start_factor=0.1, by_epoch=False, begin=0, end=4),
                  CosineAnnealingLR.build_iter_from_epoch(optimizer, begin=0, end=2, eta_min_ratio=0.01,
                                                          epoch_length=8)]
    expected = {}
    for iteration in range(1, 17):
        if iteration > 8:
            expected[iteration - 8] = optimizer.param_groups[0]["lr"]
        for scheduler in schedulers:
            scheduler.step()
    logged = _logged_lrs(log)
    assert logged, log[-2000:]
    for index, lr in logged.items():
        assert lr == pytest.approx(expected[index], rel=1e-3), (index, lr, expected[index])


def _state(optimizer: torch.optim.Optimizer, net: torch.nn.Module) -> dict:
    train_steps(net, optimizer, steps=1)
    return optimizer.state_dict()


def test_optimizer_mismatch_compares_groups_hyper_parameters_and_state(small_net):
    adamw = _state(torch.optim.AdamW(small_net.parameters(), lr=1e-3), small_net)
    assert optimizer_mismatch(adamw, torch.optim.AdamW(SmallNet().parameters(), lr=1e-2)) is None
    assert "momentum" in optimizer_mismatch(adamw, torch.optim.SGD(SmallNet().parameters(), lr=0.1, momentum=0.9))
    assert "decoupled" in optimizer_mismatch(adamw, torch.optim.Adam(SmallNet().parameters(), lr=1e-3))
    net = SmallNet()
    two_groups = torch.optim.AdamW([{"params": list(net.parameters())[:2]}, {"params": list(net.parameters())[2:]}])
    assert optimizer_mismatch(adamw, two_groups) == ("it has 1 parameter groups, the config's optimizer 2 "
                                                     "(a changed paramwise_cfg or model)")
    stripped = {**adamw, "state": {k: {n: v for n, v in s.items() if n != "exp_avg_sq"}
                                   for k, s in adamw["state"].items()}}
    message = optimizer_mismatch(stripped, torch.optim.AdamW(SmallNet().parameters()))
    assert message is not None and "exp_avg_sq" in message
    sgd = _state(torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9), small_net)
    assert optimizer_mismatch(sgd, torch.optim.SGD(SmallNet().parameters(), lr=0.01, momentum=0.9)) is None


@pytest.mark.parametrize("value, fresh", [(True, False), (False, True)])
def test_resume_optimizer_key(value, fresh):
    assert fresh_optimizer_requested({"resume_optimizer": value}) is fresh
    assert fresh_optimizer_requested({}) is False
    with pytest.raises(ConfigError, match=r"^resume_optimizer: must be True .* or False"):
        fresh_optimizer_requested({"resume_optimizer": "no"})


def test_optimizer_mismatch_compares_hybrid_routes(small_net):
    from visdet.engine.optim.hybrid.optimizer import HybridOptimizer

    params = list(small_net.parameters())
    hybrid = HybridOptimizer({"matrix": torch.optim.SGD(params[:2], lr=0.1, momentum=0.9),
                              "fallback": torch.optim.AdamW(params[2:], lr=1e-3)})
    saved = _state(hybrid, small_net)
    net = SmallNet()
    fresh = list(net.parameters())
    same = HybridOptimizer({"matrix": torch.optim.SGD(fresh[:2], lr=0.1, momentum=0.9),
                            "fallback": torch.optim.AdamW(fresh[2:], lr=1e-3)})
    assert optimizer_mismatch(saved, same) is None
    other = HybridOptimizer({"matrix": torch.optim.SGD(fresh[:2], lr=0.1, momentum=0.9),
                             "fallback": torch.optim.SGD(fresh[2:], lr=1e-3)})
    assert optimizer_mismatch(saved, other).startswith("route 'fallback': its hyper-parameters are")
    assert "routes parameters to matrix, fallback" in optimizer_mismatch(
        _state(torch.optim.AdamW(small_net.parameters()), small_net), same)
    assert "routed parameters to matrix, fallback" in optimizer_mismatch(saved, torch.optim.AdamW(net.parameters()))
