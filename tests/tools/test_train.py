"""tools/train.py and tools/test.py end to end on the small config, and their errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SMALL = "configs/faster_rcnn_r18_small.py"


def _run(*args: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _small_options(root: Path) -> list[str]:
    """Point the small config at a data root of the test's own (generated on first use)."""
    data = f"{root}/"
    return ["--cfg-options", f"embedded_data.root={data}", f"train_dataloader.dataset.data_root={data}",
            f"val_dataloader.dataset.data_root={data}", f"test_dataloader.dataset.data_root={data}",
            f"val_evaluator.ann_file={data}annotations/instances_val.json",
            f"test_evaluator.ann_file={data}annotations/instances_val.json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("train")
    work_dir, data = base / "work", base / "data"
    result = _run("tools/train.py", SMALL, "--work-dir", str(work_dir), *_small_options(data))
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir, data


def test_train_generates_data_trains_evaluates_and_draws(trained):
    work_dir, data = trained
    assert (data / "manifest.json").is_file()
    assert (work_dir / "epoch_2.pth").is_file() and (work_dir / "curves.png").is_file()
    assert list(work_dir.glob("best_coco_bbox_mAP_epoch_*.pth"))
    scalars = [json.loads(line) for line in next(work_dir.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    train = [s for s in scalars if "loss_rpn_cls" in s]
    assert train and all(k in train[0] for k in ("lr", "grad_norm", "loss_cls", "loss_bbox", "time", "memory"))
    assert sum("coco/bbox_mAP" in s for s in scalars) == 2  # validated after each of the 2 epochs
    log = next(work_dir.glob("*/*.log")).read_text()
    assert "eta:" in log and "coco/bbox_mAP_50" in log
    torch.load(work_dir / "epoch_2.pth", weights_only=True)  # safe loading, no allowlist


def test_train_writes_tensorboard_events_when_installed(trained):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work_dir, _ = trained
    events = list(work_dir.glob("*/vis_data/events.out.tfevents.*"))
    assert len(events) == 1, events
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"loss", "lr", "grad_norm", "coco/bbox_mAP"} <= tags, tags
    assert len(accumulator.Scalars("coco/bbox_mAP")) == 2  # one point per validation


def test_test_tool_evaluates_a_checkpoint(trained, tmp_path):
    work_dir, data = trained
    result = _run("tools/test.py", SMALL, str(work_dir / "epoch_2.pth"), "--work-dir", str(tmp_path),
                  *_small_options(data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coco/bbox_mAP:" in result.stdout


def test_test_tool_does_not_need_the_training_optimizer(trained, tmp_path):
    # A run trained elsewhere with an optimizer this machine cannot build (FusedLamb needs CUDA) still evaluates.
    work_dir, data = trained
    options = _small_options(data) + ["optim_wrapper.optimizer.type=FusedLamb"]
    result = _run("tools/test.py", SMALL, str(work_dir / "epoch_2.pth"), "--work-dir", str(tmp_path), *options)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coco/bbox_mAP:" in result.stdout


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    work_dir, data = trained
    result = _run("tools/train.py", SMALL, "--work-dir", str(tmp_path), "--resume", str(work_dir / "epoch_1.pth"),
                  *_small_options(data))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "resumed epoch: 1" in log and "Epoch(train) [1]" not in log and "Epoch(train) [2]" in log


def _config_error(tmp_path: Path, *extra: str) -> str:
    result = _run("tools/train.py", SMALL, "--work-dir", str(tmp_path / "w"), *extra)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    return result.stderr


def test_missing_data_root_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    message = _config_error(tmp_path, "--cfg-options", f"train_dataloader.dataset.data_root={missing}/")
    assert "data_root" in message and str(missing) in message


def test_missing_annotation_file_is_named(tmp_path, trained):
    _, data = trained
    message = _config_error(tmp_path, *_small_options(data)[:-2], "val_evaluator.ann_file=x.json",
                            "train_dataloader.dataset.ann_file=annotations/missing.json")
    assert "ann_file" in message and "missing.json" in message


def test_unknown_model_type_and_key_typo(tmp_path):
    assert "model.backbone.type" in _config_error(tmp_path, "--cfg-options", "model.backbone.type=ResNt")
    assert "did you mean 'depth'" in _config_error(tmp_path, "--cfg-options", "model.backbone.deph=18")


def test_missing_config_file(tmp_path):
    result = _run("tools/train.py", "configs/nope.py")
    assert result.returncode == 2 and "configs/nope.py" in result.stderr and "Traceback" not in result.stderr


def test_unreadable_image_names_the_file(tmp_path, trained):
    _, data = trained
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for image in (copy / "train").glob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    result = _run("tools/train.py", SMALL, "--work-dir", str(tmp_path / "w"), *_small_options(copy))
    assert result.returncode == 1 and "visdet: data error" in result.stderr
    assert "Traceback" not in result.stderr
    assert str(copy / "train") in result.stderr and ".jpg" in result.stderr
    assert "Epoch(train)" not in result.stdout + result.stderr  # refused before the first iteration
    assert not list((tmp_path / "w").glob("*.pth"))


def test_corrupt_checkpoint_is_named_not_a_traceback(trained, tmp_path):
    work_dir, data = trained
    broken = tmp_path / "epoch_1.pth"
    payload = (work_dir / "epoch_1.pth").read_bytes()
    broken.write_bytes(payload[: len(payload) // 3])
    result = _run("tools/train.py", SMALL, "--work-dir", str(tmp_path / "w"), "--resume", str(broken),
                  *_small_options(data))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "visdet: checkpoint error" in result.stderr and str(broken) in result.stderr
    assert "truncated or corrupt" in result.stderr
