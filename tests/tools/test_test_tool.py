"""tools/test.py evaluates only weights that fit the model, and reduced-precision evaluation works end to end.

The checkpoints are built from the shipped configs without training (random
weights in the saved layout): an R50 Faster R-CNN (configs/faster_rcnn_adamw.py)
is the "checkpoint of another model" for the small R18 config.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from testutils import data_options

REPO = Path(__file__).resolve().parents[2]
SMALL = "configs/faster_rcnn_r18_small.py"
R50 = "configs/faster_rcnn_adamw.py"


def build_state_dict(config: str) -> dict[str, torch.Tensor]:
    """The state dict of a config's model with its initial weights (what a checkpoint's 'state_dict' holds)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from visdet.registry import MODELS

    with DefaultScope.overwrite_default_scope("visdet"):
        return MODELS.build(Config.fromfile(str(REPO / config)).model).state_dict()


def save(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"state_dict": state_dict, "meta": {}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ckpt")
    return {"r18": save(build_state_dict(SMALL), base / "r18.pth"),
            "r50": save(build_state_dict(R50), base / "r50.pth"), "data": base / "data"}


def tool(script: str, *args: str, data: Path, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, f"tools/{script}", SMALL, *args, "--cfg-options",
                           *data_options(str(data)), *options],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def one_error_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, result.stdout[-2000:] + result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("visdet:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def test_checkpoint_of_another_model_is_refused_naming_keys(checkpoints, tmp_path):
    result = tool("test.py", str(checkpoints["r50"]), "--work-dir", str(tmp_path), data=checkpoints["data"])
    line = one_error_line(result, 1)
    assert line.startswith("visdet: checkpoint error:") and str(checkpoints["r50"]) in line
    assert "101 of 150 model weights loaded" in line and "49 of another shape" in line
    assert "backbone.layer1.0.conv1.weight (checkpoint [64, 64, 1, 1], model [64, 64, 3, 3])" in line
    assert "unexpected: backbone.layer1.0.conv3.weight" in line and "--allow-partial-load" in line
    assert "coco/bbox_mAP:" not in result.stdout and "Epoch(test)" not in result.stdout + result.stderr


def test_missing_keys_are_a_misfit_too(checkpoints, tmp_path):
    from visdet.engine.checkpoint.weights_check import compare_state_dicts, read_state_dict

    model = torch.load(checkpoints["r18"], weights_only=True)["state_dict"]
    # Saved from inside DDP: mmengine strips the 'module.' prefix when it loads, and so does the check.
    without_head = save({f"module.{k}": v for k, v in model.items() if not k.startswith("roi_head.bbox_head.fc_")},
                        tmp_path / "without_head.pth")
    fit = compare_state_dicts(model, read_state_dict(without_head))
    assert not fit.exact and fit.loaded == 146 and not fit.unexpected and not fit.mismatched
    assert fit.details() == ("missing: roi_head.bbox_head.fc_cls.weight, roi_head.bbox_head.fc_cls.bias, "
                             "roi_head.bbox_head.fc_reg.weight (+1 more)")
    assert compare_state_dicts(model, read_state_dict(checkpoints["r18"])).exact


def test_allow_partial_load_evaluates_with_a_warning_and_counts(checkpoints, tmp_path):
    result = tool("test.py", str(checkpoints["r50"]), "--allow-partial-load", "--work-dir", str(tmp_path),
                  data=checkpoints["data"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coco/bbox_mAP:" in result.stdout
    warnings = [line for line in (result.stdout + result.stderr).splitlines()
                if "WARNING" in line and "--allow-partial-load" in line]
    assert warnings and "101 of 150 model weights loaded" in warnings[0], result.stderr[-3000:]


def test_matching_checkpoint_evaluates_in_reduced_precision(checkpoints, tmp_path):
    """test_cfg.fp16=True: bfloat16 autocast on the CPU; the metric used to crash on the bf16 boxes."""
    result = tool("test.py", str(checkpoints["r18"]), "--work-dir", str(tmp_path), data=checkpoints["data"],
                  options=("test_cfg.fp16=True",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coco/bbox_mAP:" in result.stdout
    assert "does not fit" not in result.stdout + result.stderr


def test_load_from_sharing_no_weight_is_refused_before_training(checkpoints, tmp_path):
    unrelated = save({"fc.weight": torch.zeros(4, 4), "fc.bias": torch.zeros(4)}, tmp_path / "other.pth")
    result = tool("train.py", "--work-dir", str(tmp_path / "w"), data=checkpoints["data"],
                  options=(f"load_from={unrelated}",))
    line = one_error_line(result, 1)
    assert "shares no weight" in line and "0 of 150" in line and "unexpected: fc.weight, fc.bias" in line
    assert "Epoch(train)" not in result.stdout + result.stderr


def test_fine_tuning_from_a_partial_fit_warns_and_validates_in_reduced_precision(checkpoints, tmp_path):
    """load_from with other head shapes is normal fine-tuning (a warning with counts); val_cfg.fp16 validates."""
    result = tool("train.py", "--work-dir", str(tmp_path), data=checkpoints["data"],
                  options=(f"load_from={checkpoints['r50']}", "val_cfg.fp16=True", "train_cfg.max_epochs=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "fits the model only in part (101 of 150 model weights loaded" in log
    assert "Epoch(val) [1]" in log and "coco/bbox_mAP:" in log


def test_misspelt_fp16_switch_is_refused_before_training(checkpoints, tmp_path):
    line = one_error_line(tool("train.py", "--work-dir", str(tmp_path), data=checkpoints["data"],
                               options=("val_cfg.fp61=True",)), 2)
    assert "val_cfg.fp61" in line and "did you mean 'fp16'" in line


def test_fp16_switch_values_and_devices_that_cannot_work_are_refused(monkeypatch):
    import mmengine.device
    from mmengine.config import Config

    from visdet.errors import ConfigError
    from visdet.evaluation.loop_config import check_eval_loops

    cfg = Config(dict(val_cfg=dict(type="ValLoop", fp16=True), test_cfg=dict(type="TestLoop")))
    check_eval_loops(cfg)  # the CPU autocasts to bfloat16
    monkeypatch.setattr(mmengine.device, "get_device", lambda: "mps")
    with pytest.raises(ConfigError, match="does not run on this machine's 'mps' device") as error:
        check_eval_loops(cfg)
    assert error.value.key == "val_cfg.fp16"
    check_eval_loops(cfg, training=False)  # evaluation does not run the validation loop
    with pytest.raises(ConfigError, match="test_cfg.fp16: must be True or False, got 'yes'"):
        check_eval_loops(Config(dict(test_cfg=dict(type="TestLoop", fp16="yes"))), training=False)
    with pytest.raises(ConfigError, match="set by the Runner"):
        check_eval_loops(Config(dict(test_cfg=dict(type="TestLoop", evaluator=None))), training=False)
