"""visdet's non-finite step guard inside a DeepSpeed engine (FlexibleRunner + DeepSpeedStrategy, one CPU process).

In float32 DeepSpeed 0.19 applies a NaN step (every weight turns NaN); visdet
turns on ZeRO 1/2's own overflow check, counts the skipped steps and stops
after ``max_nonfinite_steps`` in a row; under ZeRO-3, which cannot skip, it
stops at the first NaN loss. Each run is a fresh interpreter: DeepSpeed needs
a process group, which must not outlive the test.
"""
from __future__ import annotations

import json

import pytest

from testutils import run_python

pytest.importorskip("deepspeed")

SCRIPT = """
import json, sys
import torch
from torch import nn
from torch.utils.data import Dataset
from mmengine.model import BaseModel

from visdet.engine.checkpoint.install import install
from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError
from visdet.engine.strategies import register
from visdet.engine.strategies.ds_checkpoint import DEEPSPEED_SAFE_GLOBALS

register()
install()
from visdet.engine.strategies.deepspeed import DeepSpeedStrategy
from visdet.engine.strategies.runner import FlexibleRunner

STAGE, NAN_FROM, MAX_BAD, WORK = {stage}, {nan_from}, {max_bad}, {work!r}


class Points(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


class TurnsNaN(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.calls = 0

    def forward(self, inputs, targets, mode="tensor"):
        out = self.fc(inputs)
        if mode != "loss":
            return out
        self.calls += 1
        loss = nn.functional.mse_loss(out, targets)
        return dict(loss=loss * float("nan") if self.calls > NAN_FROM else loss)


runner = FlexibleRunner(
    model=TurnsNaN(),
    work_dir=WORK,
    strategy=DeepSpeedStrategy(zero_optimization=dict(stage=STAGE), gradient_clipping=1.0),
    train_dataloader=dict(dataset=Points(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=8,
                          collate_fn=dict(type="default_collate"), num_workers=0),
    train_cfg=dict(by_epoch=False, max_iters=10),
    optim_wrapper=dict(type="DeepSpeedOptimWrapper", optimizer=dict(type="AdamW", lr=1e-2),
                       max_nonfinite_steps=MAX_BAD),
    default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False),
                       logger=dict(type="LoggerHook", interval=1)),
    custom_hooks=[dict(type="PlainCheckpointHook")],  # the message hub as plain tensors (weights_only)
    log_processor=dict(by_epoch=False),
    default_scope="visdet",
    randomness=dict(seed=0),
)
error = None
try:
    runner.train()
except NonFiniteTrainingError as exc:
    error = str(exc)


def weights(folder):
    with torch.serialization.safe_globals(DEEPSPEED_SAFE_GLOBALS):
        states = torch.load(f"{{WORK}}/{{folder}}/mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)
    return states


import glob, os
saved = sorted(os.path.basename(p) for p in glob.glob(f"{{WORK}}/iter_*.pth"))
result = dict(error=error, saved=saved, wrapper=type(runner.optim_wrapper).__module__,
              skips=getattr(runner.optim_wrapper, "nonfinite_skips", None))
if STAGE < 3:
    last, good = weights(saved[-1]), weights(f"iter_{{NAN_FROM}}.pth")
    result["last_finite"] = all(bool(torch.isfinite(v).all()) for v in last["module"].values())
    result["last_equals_good"] = all(torch.equal(v, good["module"][k]) for k, v in last["module"].items())
    result["counters"] = last["optim_wrapper"].get("nonfinite")
print("RESULT " + json.dumps(result))
"""


def run(tmp_path, stage: int, nan_from: int = 3, max_bad: int = 2) -> dict:
    code = SCRIPT.format(stage=stage, nan_from=nan_from, max_bad=max_bad, work=str(tmp_path / "work"))
    done = run_python(code, env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT "):]) | {"log": done.stdout + done.stderr}


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_1_2_float32_skip_nan_steps_and_stop_after_max_in_a_row(tmp_path, stage):
    result = run(tmp_path, stage)
    assert result["wrapper"] == "visdet.engine.strategies.ds_optim_wrapper"
    assert result["error"] and "2 optimizer steps in a row" in result["error"], result["log"][-3000:]
    assert "strategy.gradient_clipping" not in result["error"]  # clipping is on (1.0): no advice to turn it on
    # Iterations 1-3 stepped, 4 was skipped (and saved), 5 raised before its checkpoint.
    assert result["saved"] == [f"iter_{i}.pth" for i in (1, 2, 3, 4)]
    assert result["last_finite"] and result["last_equals_good"]  # DeepSpeed alone would have saved NaN weights
    assert result["counters"] == {"total": 1, "consecutive": 1} and result["skips"] == 2
    assert "Non-finite gradients at iteration 4: optimizer step skipped" in result["log"]


def test_zero3_cannot_skip_so_the_first_nan_loss_stops_before_its_step(tmp_path):
    result = run(tmp_path, stage=3)
    assert result["error"] and "Non-finite loss at iteration 4" in result["error"], result["log"][-3000:]
    assert "ZeRO stage 3" in result["error"] and "ZeRO stage 1 or 2" in result["error"]
    assert result["saved"] == [f"iter_{i}.pth" for i in (1, 2, 3)]
