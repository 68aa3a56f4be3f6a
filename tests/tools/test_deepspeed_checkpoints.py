"""tools/test.py and tools/train.py --resume with the checkpoint folders DeepSpeed writes.

One-process DeepSpeed runs of the small detector on the CPU (CUDA hidden, as
in tests/engine/strategies/test_deepspeed_strategy.py); evaluation reads the folder's
weights without DeepSpeed. Identical detections from the folder and from a
plain file of the same weights, and different ones from another epoch's
folder, show the folder's weights are the ones evaluated.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from testutils import data_options

pytest.importorskip("deepspeed")

REPO = Path(__file__).resolve().parents[2]
SMALL = "configs/faster_rcnn_r18_small.py"
ZERO2 = "configs/faster_rcnn_r18_small_deepspeed_zero2.py"


def tool(script: str, config: str, *args: str, data: Path,
         options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, f"tools/{script}", config, *args, "--cfg-options",
                           *data_options(str(data)), *options],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def detections(config: str, checkpoint: Path, data: Path, out: Path) -> list[dict]:
    """tools/test.py on ``checkpoint``: the detections it wrote (COCO result records)."""
    result = tool("test.py", config, str(checkpoint), "--work-dir", str(out.parent / "eval"), data=data,
                  options=(f"test_evaluator.outfile_prefix={out}",))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "coco/bbox_mAP:" in result.stdout
    return json.loads(out.with_suffix(".bbox.json").read_text())


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("visdet:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory) -> tuple[Path, Path]:
    """Two epochs of ZeRO-2 on one process: folders epoch_1.pth/ and epoch_2.pth/."""
    base = tmp_path_factory.mktemp("zero2")
    work, data = base / "work", base / "data"
    result = tool("train.py", ZERO2, "--work-dir", str(work), data=data, options=("train_cfg.max_epochs=2",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "epoch_1.pth").is_dir() and (work / "epoch_2.pth").is_dir()
    return work, data


def test_test_tool_evaluates_a_deepspeed_folder_with_its_weights(zero2_run, tmp_path):
    work, data = zero2_run
    from_folder = detections(ZERO2, work / "epoch_2.pth", data, tmp_path / "folder")
    # The same weights as an ordinary checkpoint file, evaluated with the plain (non-DeepSpeed) config.
    from visdet.engine.strategies.ds_checkpoint import DEEPSPEED_SAFE_GLOBALS

    with torch.serialization.safe_globals(DEEPSPEED_SAFE_GLOBALS):
        states = torch.load(work / "epoch_2.pth" / "mp_rank_00_model_states.pt", map_location="cpu",
                            weights_only=True)
    torch.save({"state_dict": states["module"]}, tmp_path / "weights.pth")
    from_file = detections(SMALL, tmp_path / "weights.pth", data, tmp_path / "file")
    assert from_folder and from_folder == from_file
    # Another epoch's folder gives other detections: the folder's own weights are used, not the initial ones.
    assert detections(ZERO2, work / "epoch_1.pth", data, tmp_path / "epoch1") != from_folder


def test_test_tool_sets_the_strategy_aside_and_says_so(zero2_run, tmp_path):
    work, data = zero2_run
    result = tool("test.py", ZERO2, str(work / "epoch_1.pth"), "--work-dir", str(tmp_path), data=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the config's DeepSpeedStrategy is for training and is not used here" in result.stdout + result.stderr
    assert "deepspeed.initialize" not in result.stdout + result.stderr


def test_resume_from_an_explicit_folder(zero2_run, tmp_path):
    work, data = zero2_run
    result = tool("train.py", ZERO2, "--work-dir", str(tmp_path / "w"), "--resume", str(work / "epoch_1.pth"),
                  data=data, options=("train_cfg.max_epochs=2",))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next((tmp_path / "w").glob("*/*.log")).read_text()
    assert "resumed epoch: 1, iter: 8" in log and "Epoch(train) [2][8/8]" in log and "Epoch(train) [1]" not in log


def test_checkpoint_kind_mistakes_fail_before_training(zero2_run, tmp_path):
    work, data = zero2_run
    message = one_line_error(tool("train.py", SMALL, "--work-dir", str(tmp_path / "a"),
                                  "--resume", str(work / "epoch_1.pth"), data=data))
    assert "--resume" in message and "DeepSpeed checkpoint folder" in message and "load_from=" in message
    best = next(work.glob("best_*.pth"))
    message = one_line_error(tool("train.py", ZERO2, "--work-dir", str(tmp_path / "b"), "--resume", str(best),
                                  data=data))
    assert "single file" in message and "epoch_N.pth/" in message
    message = one_line_error(tool("test.py", SMALL, str(data), data=data))
    assert "CHECKPOINT" in message and "not a DeepSpeed checkpoint" in message
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing was built


def test_zero3_folder_is_refused_with_the_merge_command_that_works(tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    result = tool("train.py", ZERO2, "--work-dir", str(work), data=data,
                  options=("train_cfg.max_epochs=1", "strategy.zero_optimization.stage=3"))
    assert result.returncode == 0, result.stderr[-3000:]
    message = one_line_error(tool("test.py", ZERO2, str(work / "epoch_1.pth"), data=data))
    assert "ZeRO-3" in message and "zero_to_fp32.py" in message
    command = re.search(r"python (\S+zero_to_fp32\.py .*?), then pass (\S+)", message)
    assert command, message
    merge = subprocess.run([sys.executable, *command.group(1).split()], capture_output=True, text=True,
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert merge.returncode == 0, merge.stderr[-3000:]
    assert detections(ZERO2, Path(command.group(2)), data, tmp_path / "merged")


def test_a_deepspeed_run_logs_the_gradient_norm(zero2_run):
    work, _ = zero2_run
    log = next(work.glob("*/*.log")).read_text()
    lines = [line for line in log.splitlines() if "Epoch(train)" in line]
    norms = [float(re.search(r"grad_norm: (\S+)", line).group(1)) for line in lines if "grad_norm:" in line]
    assert lines and len(norms) == len(lines)  # every logged iteration, as in a plain run
    assert all(math.isfinite(n) and n > 0 for n in norms)
