"""The port of MMDetection 3.3.0's faster-rcnn_r50_fpn_1x_coco: MMDetection's files, changed only in the data,
and it trains the embedded data through tools/train.py as it is."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
PORT = "configs/mmdet/faster-rcnn_r50_fpn_1x_coco.py"
BASES = ["models/faster-rcnn_r50_fpn.py", "datasets/coco_detection.py", "schedules/schedule_1x.py",
         "default_runtime.py"]
#: The only config keys the port changes from MMDetection's four _base_ files.
CHANGED = ("data_root", "classes", "metainfo", "embedded_data", "model.backbone.init_cfg",
           "model.roi_head.bbox_head.num_classes", "val_evaluator.ann_file", "test_evaluator.ann_file",
           *(f"{loader}.dataset.{key}" for loader in ("train_dataloader", "val_dataloader", "test_dataloader")
             for key in ("data_root", "metainfo", "ann_file", "data_prefix.img")))


def flat(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(flat(value, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def test_the_port_changes_only_data_paths_classes_and_the_download(tmp_path):
    bases_only = tmp_path / "mmdetection_as_is.py"
    bases_only.write_text(f"_base_ = {[str(REPO / 'configs/mmdet/_base_' / b) for b in BASES]!r}\n")
    mmdet, port = flat(Config.fromfile(str(bases_only)).to_dict()), flat(Config.fromfile(str(REPO / PORT)).to_dict())
    changed = {k for k in mmdet.keys() | port.keys() if mmdet.get(k, "<absent>") != port.get(k, "<absent>")}
    assert changed, "the port must point at the embedded data"
    assert all(k.startswith(CHANGED) for k in changed), sorted(k for k in changed if not k.startswith(CHANGED))
    # MMDetection's own spellings stay: the names visdet has to know.
    assert mmdet["default_scope"] == port["default_scope"] == "mmdet"
    assert port["train_dataloader.batch_sampler.type"] == "AspectRatioBatchSampler"
    assert port["default_hooks.visualization.type"] == "DetVisualizationHook"
    assert port["visualizer.type"] == "DetLocalVisualizer"
    assert mmdet["model.backbone.init_cfg.checkpoint"] == "torchvision://resnet50"
    assert port["model.roi_head.bbox_head.num_classes"] == 4


def train(work: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "tools/train.py", PORT, "--work-dir", str(work), "--cfg-options",
                           *options], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


@pytest.mark.slow
def test_the_port_trains_the_embedded_data(tmp_path):
    # A ResNet-50 detector at MMDetection's 1333x800 takes minutes per iteration on a CPU: the test shrinks
    # only the image scale (64 px), the run (one batch of train and of val, one epoch) and turns on the
    # drawing of val images (MMDetection's DetVisualizationHook defaults to draw=False).
    result = train(tmp_path, "train_dataloader.dataset.pipeline.2.scale=(64,64)",
                   "val_dataloader.dataset.pipeline.1.scale=(64,64)", "train_dataloader.num_batch_per_epoch=1",
                   "val_dataloader.num_batch_per_epoch=1", "train_cfg.max_epochs=1",
                   "default_hooks.visualization.draw=True", "default_hooks.visualization.interval=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "default_scope='mmdet': MMDetection is not installed, so this config is read as visdet's" in result.stdout
    # Plain tensors and containers only (PlainCheckpointHook, added with the translation): tools/test.py and
    # --resume load it with weights_only=True.
    checkpoint = torch.load(tmp_path / "epoch_1.pth", map_location="cpu", weights_only=True)
    assert any(key.startswith("backbone.layer4.") for key in checkpoint["state_dict"])
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    scalars = [json.loads(line) for line in (run / "vis_data" / "scalars.json").read_text().splitlines()]
    assert any("coco/bbox_mAP" in record for record in scalars), scalars
    (drawn_path,) = (run / "vis_data" / "vis_image").glob("val_img_*.png")
    drawn = cv2.imread(str(drawn_path))
    source = cv2.imread(str(REPO / "data/embedded_shapes/val/000000.jpg"))  # the first val image
    assert drawn.shape == (source.shape[0], 2 * source.shape[1], 3)  # ground truth | predictions
    changed = (abs(drawn[:, :source.shape[1]].astype(int) - source.astype(int)).sum(axis=2) > 60).mean()
    assert 0.01 < changed < 0.6  # the ground-truth boxes and their class names, drawn on the image


def train_main():
    """tools/train.py's main(), imported (the check runs before anything is built: no subprocess needed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("visdet_tools_train", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_what_visdet_lacks_is_one_message_at_check_time(tmp_path, capsys):
    config = tmp_path / "retina_like.py"
    config.write_text(f"_base_ = '{REPO / PORT}'\n"
                      "model = dict(backbone=dict(type='ResNeXt'), rpn_head=dict(loss_bbox=dict(type='GIoULoss')))\n"
                      "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='PhotoMetricDistortion')]\n"
                      "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n")
    status = train_main()([str(config), "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    (message,) = [line for line in err.split("\n  ")[0].splitlines() if line.startswith("visdet:")]
    assert message.startswith("visdet: configuration error: 3 types in this config are not in visdet"), err
    for line in ("model.backbone.type: 'ResNeXt' (use ResNet)",
                 "model.rpn_head.loss_bbox.type: 'GIoULoss' (use L1Loss or SmoothL1Loss)",
                 "train_dataloader.dataset.pipeline[1].type: 'PhotoMetricDistortion' (visdet's transforms: "):
        assert "\n  " + line in err, err
    assert not (tmp_path / "w").exists()
