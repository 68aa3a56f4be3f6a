"""DDP on CPU (gloo): two processes end with the parameters of one process with the same global batch,
and a two-process run with ZeroRedundancyOptimizer stops and resumes exactly.

What makes the two differ by design, and what this run fixes for the comparison:
BatchNorm batch statistics (per process: ``norm_eval=True``), the RPN/RoI
samplers drawing from each process's global RNG stream
(``seed_per_image=True``), the random flip (off), and the data order (the
sampler's seed is fixed; DDP gives rank r every r-th index of the same
permutation). What is left are float summation-order differences.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from testutils import REPO, free_port

ITERS = 4

CONFIG = f"""
_base_ = "{REPO}/configs/faster_rcnn_r18_small.py"
model = dict(
    backbone=dict(norm_eval=True),
    train_cfg=dict(rpn=dict(sampler=dict(seed_per_image=True)), rcnn=dict(sampler=dict(seed_per_image=True))))
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(128, 128), keep_ratio=True),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(batch_size={{batch}}, sampler=dict(type="DefaultSampler", shuffle=True, seed=0),
                        dataset=dict(pipeline=train_pipeline))
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters={{max_iters}}, val_interval=1000)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end={ITERS})]
optim_wrapper = dict(_delete_=True, type="OptimWrapper", optimizer={{optimizer}})
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval={{interval}}, by_epoch=False),
                     logger=dict(interval=1))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
"""


SGD = 'dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)'
ZERO = 'dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW", lr=1e-3, weight_decay=0.05)'


def _write_config(tmp_path: Path, name: str, processes: int, optimizer: str = SGD, max_iters: int = ITERS,
                  interval: int = ITERS) -> Path:
    config = tmp_path / f"{name}.py"
    text = CONFIG.replace("{batch}", str(2 // processes)).replace("{optimizer}", optimizer)
    config.write_text(text.replace("{max_iters}", str(max_iters)).replace("{interval}", str(interval)))
    return config


def _train(tmp_path: Path, processes: int, config: Path | None = None, work_dir: Path | None = None,
           *flags: str) -> Path:
    """Train with a global batch of 2 (SGD, ITERS iterations unless ``config`` says otherwise); the work dir."""
    config = config or _write_config(tmp_path, f"equivalence_{processes}", processes)
    work_dir = work_dir or tmp_path / f"work{processes}"
    data = f"{tmp_path}/data/"
    options = [*flags, "--cfg-options", f"embedded_data.root={data}", f"train_dataloader.dataset.data_root={data}"]
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, "tools/train.py", str(config)]
    else:
        command = ["bash", "tools/dist_train.sh", str(config), str(processes)]
    result = subprocess.run([*command, "--work-dir", str(work_dir), *options],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def _weights(work_dir: Path, iteration: int = ITERS) -> dict:
    return torch.load(work_dir / f"iter_{iteration}.pth", weights_only=True)["state_dict"]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    one = _weights(_train(tmp_path, 1))
    two = _weights(_train(tmp_path, 2))
    assert one.keys() == two.keys()
    from visdet.registry import MODELS  # the same initial weights: the seed is fixed in both runs
    from mmengine.config import Config
    from mmengine.runner import set_random_seed

    cfg = Config.fromfile(str(tmp_path / "equivalence_1.py"))
    set_random_seed(0)
    initial = MODELS.build(cfg.model).state_dict()
    worst, moved = 0.0, 0.0
    for name, value in one.items():
        if not value.is_floating_point():
            continue
        change = (value - initial[name]).abs().max().item()
        diff = (value - two[name]).abs().max().item()
        moved = max(moved, change)
        # float summation order differs (one batch of 2 vs two of 1 plus an all-reduce): tiny, relative to the change
        assert diff <= 1e-6 + 1e-3 * change, f"{name}: differs by {diff:.3g} after moving {change:.3g}"
        worst = max(worst, diff)
    print(f"largest difference {worst:.3g}, largest change {moved:.3g}")
    assert moved > 1e-3, "training did not move the weights: the comparison would prove nothing"


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _tensors(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_zero_redundancy_optimizer_saves_its_full_state_and_resumes_exactly(tmp_path):
    """2 processes, optimizer state sharded: stop after 3 iterations, resume to 6 = 6 without a stop."""
    full = _train(tmp_path, 2, _write_config(tmp_path, "zero_full", 2, ZERO, max_iters=6, interval=3),
                  tmp_path / "full")
    _train(tmp_path, 2, _write_config(tmp_path, "zero_first", 2, ZERO, max_iters=3, interval=3), tmp_path / "cut")
    resumed = _train(tmp_path, 2, _write_config(tmp_path, "zero_rest", 2, ZERO, max_iters=6, interval=3),
                     tmp_path / "cut", "--resume")
    expected = torch.load(full / "iter_6.pth", weights_only=True)
    got = torch.load(resumed / "iter_6.pth", weights_only=True)
    halfway = torch.load(resumed / "iter_3.pth", weights_only=True)["optimizer"]
    # rank 0 saved the state of every parameter, not only its own shard
    num_params = sum(1 for value in expected["state_dict"].values() if value.is_floating_point())
    assert len(halfway["state"]) == len(expected["optimizer"]["state"]) > num_params // 2
    assert got["meta"]["iter"] == expected["meta"]["iter"] == 6
    for key in ("state_dict", "optimizer"):
        pairs = list(zip(_tensors(expected[key]), _tensors(got[key]), strict=True))
        assert pairs
        for a, b in pairs:
            assert torch.equal(a, b), f"{key} differs after the resume"
