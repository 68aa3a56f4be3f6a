"""What a user reads when tools/train.py stops: one line, the documented exit status, a traceback only with --debug.

Exit statuses (visdet.engine.launch.run_reporting_errors): 0 finished, 1 data/checkpoint/training failure,
2 configuration mistake, 130 interrupted.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from testutils import REPO, data_options

SMALL = "configs/faster_rcnn_r18_small.py"
# Printed by DeepSpeed's import (through mmengine), not by visdet: not part of what these tests judge.
NOISE = ("[real_accelerator.py",)


def _train(work_dir: Path, data: Path, *options: str, flags: tuple[str, ...] = (), config: str = SMALL,
           env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "tools/train.py", config, "--work-dir", str(work_dir), *flags, "--cfg-options",
         *data_options(str(data)), *options],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in NOISE)]


def _one_line(result: subprocess.CompletedProcess, status: int, prefix: str) -> str:
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = _lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The embedded data set's root, shared by this module's runs (the first run generates it)."""
    return tmp_path_factory.mktemp("data")


def test_a_diverged_run_says_its_checkpoints_hold_diverged_parameters(tmp_path, data):
    # lr=1e6: the first step is finite and sends the loss to ~1e32/NaN; iterations 2-11 are skipped, and
    # epoch_1.pth and best_*.pth are saved after iteration 8 from the diverged parameters.
    work_dir = tmp_path / "w"
    result = _train(work_dir, data, "optim_wrapper.optimizer.lr=1e6")
    line = _one_line(result, 1, "visdet: training error: 10 optimizer steps in a row")
    assert "The parameters were last updated at iteration 1; the loss they give (iteration 2) was already " \
           "non-finite" in line
    for name in ("epoch_1.pth", "best_coco_bbox_mAP_epoch_1.pth"):
        assert (work_dir / name).is_file()
        assert str(work_dir / name) in line.split("hold these diverged parameters")[1].split("No checkpoint")[0]
    assert "No checkpoint was saved before them" in line
    assert "last checkpoint saved holds them" not in line
    assert "clip_grad" not in line  # the config clips already (max_norm=10)
    scalars = [json.loads(s) for s in next(work_dir.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    logged = [s["grad_norm"] for s in scalars if "grad_norm" in s]
    # Every log window (interval 2) holds a skipped step: was the first step's norm, repeated.
    assert logged and not any(math.isfinite(g) for g in logged), logged


def test_ctrl_c_exits_130_with_one_line_and_leaves_complete_checkpoints(tmp_path, data):
    work_dir = tmp_path / "w"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    command = [sys.executable, "tools/train.py", SMALL, "--work-dir", str(work_dir), "--cfg-options",
               *data_options(str(data)), "train_cfg.max_epochs=50", "default_hooks.checkpoint.by_epoch=False",
               "default_hooks.checkpoint.interval=1"]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=REPO,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + 300
            while not ("Epoch(train)" in out.read_text() and (work_dir / "last_checkpoint").is_file()):
                assert process.poll() is None, err.read_text()[-3000:]
                assert time.monotonic() < deadline, "no training log line in 300 s"
                time.sleep(0.2)
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    stderr_text = err.read_text()
    assert status == 130, (status, stderr_text[-3000:])
    assert "Traceback" not in stderr_text + out.read_text()
    lines = _lines(stderr_text)
    assert len(lines) == 1 and lines[0].startswith("visdet: interrupted (Ctrl-C); the last checkpoint saved, "), lines
    last = (work_dir / "last_checkpoint").read_text().strip()
    assert last in lines[0] and "--resume" in lines[0]
    assert not [p.name for p in work_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
    for checkpoint in work_dir.glob("*.pth"):
        torch.load(checkpoint, map_location="cpu", weights_only=True)  # each one complete


def test_a_remote_pretrained_checkpoint_is_refused_without_a_download(tmp_path, data):
    config = tmp_path / "pretrained.py"
    config.write_text(f"_base_ = '{REPO / SMALL}'\n"
                      "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
                      "checkpoint='torchvision://resnet50')))\n")
    # An empty hub cache, and a proxy nothing listens on: a download attempt would end in URLError.
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = _train(tmp_path / "w", data, config=str(config), env=env)
    line = _one_line(result, 2, "visdet: configuration error: checkpoint 'torchvision://resnet50'")
    assert "visdet downloads nothing" in line and "URLError" not in line
    assert "init_cfg=dict(type='Pretrained', checkpoint='/path/to/file.pth')" in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line
    assert "Epoch(train)" not in result.stdout


def test_a_remote_checkpoint_already_in_the_hub_cache_is_read_from_it(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader, get_torchvision_models

    from visdet.engine.launch import refuse_downloads

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    url = get_torchvision_models()["resnet18"]
    (tmp_path / "checkpoints").mkdir()
    torch.save({"conv1.weight": torch.ones(2)}, tmp_path / "checkpoints" / url.rsplit("/", 1)[1])
    refuse_downloads()
    loaded = CheckpointLoader.load_checkpoint("torchvision://resnet18", map_location="cpu")
    assert torch.equal(loaded["conv1.weight"], torch.ones(2))


def test_a_work_dir_that_is_a_file_is_one_config_error(tmp_path, data):
    work_file = tmp_path / "taken"
    work_file.write_text("not a folder")
    result = _train(work_file, data)
    line = _one_line(result, 2, "visdet: configuration error: --work-dir: ")
    assert str(work_file) in line and "is a file, not a folder" in line


def test_batch_size_zero_is_one_config_error(tmp_path, data):
    result = _train(tmp_path / "w", data, "train_dataloader.batch_size=0")
    line = _one_line(result, 2, "visdet: configuration error: train_dataloader.batch_size")
    assert "positive integer" in line


@pytest.mark.parametrize("tool", ["train", "test"])
def test_debug_adds_the_traceback_after_the_line(tmp_path, tool):
    work_file = tmp_path / "taken"
    work_file.write_text("")
    args = ([SMALL, "--work-dir", str(work_file)] if tool == "train"
            else [SMALL, str(tmp_path / "missing.pth")])
    result = subprocess.run([sys.executable, f"tools/{tool}.py", *args, "--debug"], capture_output=True,
                            text=True, cwd=REPO, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _lines(result.stderr)
    assert lines[0].startswith("visdet: configuration error: ")
    assert "Traceback (most recent call last)" in result.stderr and "ConfigError" in result.stderr


def test_an_mmdet_style_init_cfg_over_visdets_none_is_one_config_error(tmp_path, data):
    # visdet's base model has init_cfg=None; mmdet's configs set a dict there, so a child config's dict
    # needs _delete_=True. mmengine's merge says so in a TypeError, which was a traceback.
    config = tmp_path / "pretrained.py"
    config.write_text(f"_base_ = '{REPO / SMALL}'\n"
                      "model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))\n")
    line = _one_line(_train(tmp_path / "w", data, config=str(config)), 2, "visdet: configuration error: init_cfg=")
    assert "_delete_=True" in line
