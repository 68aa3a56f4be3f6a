"""A run killed with SIGKILL and resumed ends with exactly the parameters of an uninterrupted run.

Model, optimizer state (torch, bitsandbytes 8-bit, D-Adaptation, the Muon hybrid),
schedulers, iteration counter, RNG streams and the data position must all come
back; any one missing changes the final weights. The runs keep the shipped
hooks: validation on, CheckpointHook with save_best (its best save re-saves the
epoch checkpoint from inside validation). CPU, deterministic settings.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from testutils import REPO, data_options, train_losses, run_log

SCRIPT = Path(__file__).with_name("exact_resume_run.py")
KILL_TRAIN = Path(__file__).with_name("kill_train.py")
SMALL = "configs/faster_rcnn_r18_small.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same float summation order every run


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=ENV,
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


def _assert_same(expected, got, what: str) -> None:
    assert expected.keys() == got.keys()
    for key in expected:
        for a, b in zip(_tensors(expected[key]), _tensors(got[key]), strict=True):
            assert torch.equal(a, b), f"{what}: {key} differs after resume"


LONG = pytest.mark.long  # the other optimizers' states and a second epoch-loop kill: `pytest -m long` runs them


@pytest.mark.parametrize("optimizer, loop, kill_at", [
    ("adamw", "iter", "3"),
    ("adamw_in_backward", "iter", "3"),  # InBackwardOptimWrapper: per-parameter optimizers behind one façade
    ("sam_sgd", "iter", "3"),  # the closure driver: SAM's two passes a step, its base optimizer's state
    pytest.param("adamw8bit", "iter", "3", marks=LONG), pytest.param("dadapt_adam", "iter", "3", marks=LONG),
    pytest.param("sgd", "iter", "3", marks=LONG), pytest.param("muon", "iter", "3", marks=LONG),
    pytest.param("adamw", "epoch", "10", marks=LONG),  # epoch loop: killed mid-epoch 2, after a validation
    ("adamw", "epoch", "val:1"),  # right after epoch 1's validation: resumed from the checkpoint the best save wrote
])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, optimizer, loop, kill_at):
    data = str(tmp_path / "data")
    full = _run(str(tmp_path / "full"), data, optimizer, "0", "fresh", loop)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(str(tmp_path / "cut"), data, optimizer, kill_at, "fresh", loop)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(str(tmp_path / "cut"), data, optimizer, "0", "resume", loop)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.stdout.split()[-1] == resumed.stdout.split()[-1]  # same final iteration

    expected = torch.load(tmp_path / "full" / "final_state.pt", weights_only=True)
    got = torch.load(tmp_path / "cut" / "final_state.pt", weights_only=True)
    _assert_same(expected, got, f"{optimizer}/{loop}")


# tools/train.py on the shipped small config, nothing changed but the data set's size (4 iterations an epoch,
# 4 validation images): epoch checkpoints, validation after each epoch, the best checkpoint by bbox mAP.
_SMALL_DATA = ("embedded_data.num_train=8", "embedded_data.num_val=4")


def _train(work_dir: Path, data: Path, kill: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(KILL_TRAIN), kill, SMALL, "--work-dir", str(work_dir), *flags,
                           "--cfg-options", *data_options(str(data)), *_SMALL_DATA],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600, umask=0o022)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("exact_resume_tool")
    result = _train(base / "full", base / "data", "never")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((base / "full").glob("best_coco_bbox_mAP_epoch_*.pth"))  # the best save did run
    # Modes as the umask (022) asks: mkstemp/mkdtemp alone would give 0600 checkpoints and a 0700 data folder.
    assert stat.S_IMODE((base / "full" / "epoch_2.pth").stat().st_mode) == 0o644
    assert stat.S_IMODE((base / "data").stat().st_mode) == 0o755
    return base / "full", base / "data"


# SIGKILL right after epoch 1's best save; Ctrl-C (SIGINT) mid-epoch 2 (both resume from epoch_1.pth).
@pytest.mark.parametrize("kill", ["val:1", "iter:6:INT"])
def test_train_tool_killed_and_resumed_matches_the_uninterrupted_run(uninterrupted, tmp_path, kill):
    full, data = uninterrupted
    cut = tmp_path / "cut"
    killed = _train(cut, data, kill)
    if kill.endswith(":INT"):  # KeyboardInterrupt: the tool stops with an error status
        assert killed.returncode > 0 and not (cut / "epoch_2.pth").exists(), killed.stderr[-3000:]
    else:
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _train(cut, data, "never", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = run_log(cut)
    assert "resumed epoch: 1, iter: 4" in log  # from epoch_1.pth, the newest epoch checkpoint
    assert train_losses(log) == train_losses(run_log(full))[-len(train_losses(log)):]  # epoch 2's, logged

    expected = torch.load(full / "epoch_2.pth", weights_only=True)
    got = torch.load(cut / "epoch_2.pth", weights_only=True)
    for key in ("state_dict", "optimizer", "param_schedulers"):
        _assert_same({key: expected[key]}, {key: got[key]}, f"tools/train.py killed at {kill}")
