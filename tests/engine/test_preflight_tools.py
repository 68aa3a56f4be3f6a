"""The pre-flight section checks through tools/train.py, as a user runs them (--cfg-options on the small config)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testutils import REPO, data_options

SMALL = "configs/faster_rcnn_r18_small.py"


def _train(tmp_path: Path, *options: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "tools/train.py", SMALL, "--work-dir", str(tmp_path / "work"),
                           "--cfg-options", *data_options(str(tmp_path / "data")), *options],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


@pytest.mark.parametrize("option, first", [
    ("train_cfg.max_epoch=1", "train_cfg.max_epoch: EpochBasedTrainLoop has no argument 'max_epoch'; "
                              "did you mean 'max_epochs'?"),
    ("model.roi_head.bbox_head.num_class=4", "model.roi_head.bbox_head.num_class: Shared2FCBBoxHead has no "
                                             "argument 'num_class'; did you mean 'num_classes'?"),
    ("model.roi_head.bbox_head.num_classes=80", "model.roi_head.bbox_head.num_classes: is 80, but the training "
                                                "data set has 4 classes"),
])
def test_section_mistakes_are_one_message_before_anything_is_built(tmp_path, option, first):
    result = _train(tmp_path, option)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"visdet: configuration error: {first}"), result.stderr[-3000:]
    # Found before the Runner exists: no config dump, no data generated, nothing in the work dir.
    assert "Config:" not in result.stdout and not (tmp_path / "data").exists() and not (tmp_path / "work").exists()
    # The message is the first and last thing printed: no backend's import-time warning (DeepSpeed's) before it.
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) <= 2, result.stdout + result.stderr


def test_a_longer_run_warns_that_the_schedule_ends_first_and_trains(tmp_path):
    # The override docs/training.md shows, plus a frozen stem without pretrained weights; one batch per epoch.
    result = _train(tmp_path, "train_cfg.max_epochs=3", "model.backbone.frozen_stages=0",
                    "train_dataloader.num_batch_per_epoch=1", "val_dataloader.num_batch_per_epoch=1",
                    "default_hooks.checkpoint.save_best=None", "custom_hooks=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    schedule = "WARNING - param_scheduler[1].end: the schedule ends at epoch 2, but training runs 3 epochs"
    assert schedule in out and "param_scheduler.1.end=3" in out
    assert "WARNING - model.backbone.frozen_stages: is 0" in out
    # Logged first, above the Runner's config dump.
    assert out.index(schedule) < out.index("Config:")
    assert "Epoch(train) [3]" in out
