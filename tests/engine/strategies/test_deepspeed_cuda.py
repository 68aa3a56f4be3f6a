"""DeepSpeed on one GPU: the small detector trained in fp16 and bf16 (ZeRO-2), and each 1-bit optimizer that
DeepSpeed's engine builds itself (parametrised from the catalogue's ``engine_name`` records) under fp16.

One process through ``tools/dist_train.sh`` with CUDA visible (the CPU tests in test_deepspeed_strategy.py
hide it). Marked ``cuda``: skipped without a CUDA device; ``bash tools/cuda_check.sh`` runs them and
installs cupy, which the 1-bit optimizers' compressed allreduce imports (docs/cuda.md).
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch

from testutils import dist_train, run_log, train_losses
from visdet.engine.optim import get_catalog

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.cuda

ZERO2 = "configs/faster_rcnn_r18_small_deepspeed_zero2.py"
ENGINE_BUILT = [n for n, e in get_catalog().entries.items() if e.spec.engine_name]
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: fp16's dynamic loss scale starts at 2**8, not DeepSpeed's 2**16, so that few of 8 steps are skipped.
FP16 = ("strategy.fp16.enabled=True", "strategy.fp16.initial_scale_power=8")


def _module_state(ckpt: Path) -> dict:
    """The model weights DeepSpeed saved, read as visdet reads them (weights_only, DeepSpeed's classes only)."""
    from visdet.engine.strategies.ds_checkpoint import DEEPSPEED_SAFE_GLOBALS

    with torch.serialization.safe_globals(DEEPSPEED_SAFE_GLOBALS):
        return torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)["module"]


def _check_trained(work: Path) -> str:
    log = run_log(work)
    losses = train_losses(log)
    assert "Epoch(train) [1]" in log and losses and all(math.isfinite(v) for v in losses), losses
    return log


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_zero2_trains_the_small_detector_on_one_gpu(precision, tmp_path):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    options = FP16 if precision == "fp16" else ("strategy.bf16.enabled=True",)
    dist_train(ZERO2, work, data, options=("train_cfg.max_epochs=1", *options), nproc=1, hide_cuda=False)
    log = _check_trained(work)
    assert "coco/bbox_mAP" in log  # validation ran in the reduced precision too
    weights = _module_state(work / "epoch_1.pth")
    assert weights["backbone.conv1.weight"].dtype == PRECISIONS[precision]  # the engine trained cast weights


@pytest.mark.parametrize("name", ENGINE_BUILT)
def test_engine_built_optimizer_trains_the_small_detector_on_one_gpu(name, tmp_path):
    pytest.importorskip("cupy")  # DeepSpeed's NCCL backend for the compressed allreduce imports it
    entry = get_catalog().entries[name]
    # Their warm-up length is freeze_step (OnebitAdam, OnebitLamb) or var_freeze_step (ZeroOneAdam): end it
    # after 2 of the epoch's 8 steps, so the compressed phase runs too.
    freeze = [k for k in inspect.signature(entry.resolve()).parameters if k.endswith("freeze_step")]
    assert freeze, f"{name} takes no *freeze_step argument"
    data, work = f"{tmp_path}/data/", tmp_path / "work"
    options = ("train_cfg.max_epochs=1", "train_cfg.val_interval=2", "default_hooks.checkpoint=None",
               "strategy.zero_optimization.stage=0", *FP16,
               f"optim_wrapper.optimizer.type={name}", "optim_wrapper.optimizer.weight_decay=0.0",
               *(f"optim_wrapper.optimizer.{k}=2" for k in freeze))
    dist_train(ZERO2, work, data, options=options, nproc=1, hide_cuda=False)
    _check_trained(work)
