"""A run killed with SIGKILL and resumed ends with exactly the parameters of an uninterrupted run.

Model, optimizer state (torch, bitsandbytes 8-bit, D-Adaptation, the Muon hybrid),
schedulers, iteration counter, RNG streams and the data position must all come
back; any one missing changes the final weights. CPU, deterministic settings.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("exact_resume_run.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same float summation order every run
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


@pytest.mark.parametrize("optimizer, loop, kill_at", [
    ("adamw", "iter", 3), ("adamw8bit", "iter", 3), ("dadapt_adam", "iter", 3), ("sgd", "iter", 3),
    ("muon", "iter", 3), ("adamw", "epoch", 10),  # epoch loop: killed mid-epoch 2, after a validation
])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, optimizer, loop, kill_at):
    data = str(tmp_path / "data")
    full = _run(str(tmp_path / "full"), data, optimizer, "0", "fresh", loop)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(str(tmp_path / "cut"), data, optimizer, str(kill_at), "fresh", loop)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(str(tmp_path / "cut"), data, optimizer, "0", "resume", loop)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.stdout.split()[-1] == resumed.stdout.split()[-1]  # same final iteration

    expected = torch.load(tmp_path / "full" / "final_state.pt", weights_only=True)
    got = torch.load(tmp_path / "cut" / "final_state.pt", weights_only=True)
    assert expected.keys() == got.keys()
    for key in expected:
        for a, b in zip(_tensors(expected[key]), _tensors(got[key]), strict=True):
            assert torch.equal(a, b), f"{optimizer}/{loop}: {key} differs after resume"
