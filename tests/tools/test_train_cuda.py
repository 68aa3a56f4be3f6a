"""tools/train.py on a GPU: the small detector for one epoch with ``--amp`` in float16 (GradScaler) and bfloat16.

The Runner puts the model on CUDA by itself when there is one; the log then says which AdamW kernel
visdet's constructor picked for the CUDA parameters, and the checkpoint carries the GradScaler's state
exactly when float16 needs one. Marked ``cuda``: skipped without a CUDA device; ``bash tools/cuda_check.sh``
runs them (docs/cuda.md). The CPU run of the same tool is tests/tools/test_train.py.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from testutils import REPO, data_options, run_log, train_losses

pytestmark = pytest.mark.cuda

SMALL = "configs/faster_rcnn_r18_small.py"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_small_detector_trains_on_cuda_with_amp(dtype, tmp_path):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    options = [*data_options(data), "train_cfg.max_epochs=1", f"optim_wrapper.dtype={dtype}"]
    result = subprocess.run([sys.executable, "tools/train.py", SMALL, "--work-dir", str(work), "--amp",
                             "--cfg-options", *options], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    log = run_log(work)
    assert "AdamW on cuda: fused implementation" in log  # the Runner moved the model before the optimizer
    losses = train_losses(log)
    assert losses and all(math.isfinite(v) for v in losses), losses
    assert "coco/bbox_mAP" in log  # validation ran on the GPU too
    checkpoint = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=True)
    scaler = checkpoint["optimizer"].get("loss_scaler")
    if dtype == "float16":
        assert scaler is not None and scaler["scale"] > 0  # dynamic loss scaling ran
    else:
        assert scaler is None  # bfloat16 needs no GradScaler
