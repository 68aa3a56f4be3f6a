"""A run with the shipped EMA config's hooks, killed and resumed, ends with the EMA and raw weights of an
uninterrupted run.

The EMA (MMDetection's ExpMomentumEMA through mmengine's EMAHook) resumes from the
checkpoint's ``ema_state_dict``: its weights and its update count, which sets the
momentum of every later update; the raw weights come back from the same file
(the checkpoint's ``state_dict`` holds the EMA ones). Same script and settings as
test_exact_resume.py: every shipped hook, validation with save_best, a SIGKILL
after iteration 3 of 8, CPU, one thread.
"""
from __future__ import annotations

import signal

import pytest
import torch

from test_exact_resume import _assert_same, _run


@pytest.mark.slow  # three runs of the small detector (8 iterations, 2 validations each)
def test_killed_and_resumed_run_with_ema_matches_the_uninterrupted_one(tmp_path):
    data = str(tmp_path / "data")
    full = _run(str(tmp_path / "full"), data, "adamw", "0", "fresh", "iter", "ema")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(str(tmp_path / "cut"), data, "adamw", "3", "fresh", "iter", "ema")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(str(tmp_path / "cut"), data, "adamw", "0", "resume", "iter", "ema")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.stdout.split()[-1] == resumed.stdout.split()[-1] == "8"

    expected = torch.load(tmp_path / "full" / "final_state.pt", weights_only=True)
    got = torch.load(tmp_path / "cut" / "final_state.pt", weights_only=True)
    assert int(expected["ema.steps"]) == 8  # every iteration updated the average, the resumed ones too
    raw = [k for k in expected if not k.startswith(("ema.", "optimizer."))]
    assert any(not torch.equal(expected[k], expected[f"ema.module.{k}"]) for k in raw)  # the average is not a copy
    _assert_same(expected, got, "adamw + EMAHook")
