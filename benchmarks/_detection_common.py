"""Shared pieces of the detector benchmarks: identical batches for visdet and torchvision.

Both detectors must see the same pixels and boxes, so batches are produced
once by visdet's own data pipeline and converted for torchvision (RGB floats
in [0, 1], labels shifted by one because torchvision's class 0 is background).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
import torchvision
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def visdet_config(depth: int, size: int, data_root: str, num_train: int, num_val: int) -> Config:
    """The main config at ``depth`` and ``size``, on an embedded set generated under ``data_root``."""
    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py"))
    channels = [64, 128, 256, 512] if depth in (18, 34) else [256, 512, 1024, 2048]
    cfg.merge_from_dict({
        "model.backbone.depth": depth, "model.neck.in_channels": channels,
        "embedded_data.root": data_root, "embedded_data.image_size": (size, size),
        "embedded_data.num_train": num_train, "embedded_data.num_val": num_val,
    })
    for split in ("train", "val"):
        loader = cfg[f"{split}_dataloader"]
        loader.dataset.data_root = data_root
        for step in loader.dataset.pipeline:
            if step["type"] == "Resize":
                step["scale"] = (size, size)
    cfg.val_evaluator.ann_file = f"{data_root}/annotations/instances_val.json"
    from visdet.datasets.embedded import EmbeddedDataSpec, ensure

    ensure(data_root, EmbeddedDataSpec.from_cfg(dict(cfg.embedded_data)))
    return cfg


def build_dataset(cfg: Config, split: str, flip: bool | None = None):
    """visdet's data set for ``split``; for training, flip=True/False fixes the flip (the benchmark draws it)."""
    from visdet.registry import DATASETS

    dataset_cfg = cfg[f"{split}_dataloader"].dataset.copy()
    if flip is not None:
        dataset_cfg.pipeline = [dict(step, prob=1.0 if flip else 0.0) if step["type"] == "RandomFlip" else step
                                for step in dataset_cfg.pipeline]
    return DATASETS.build(dataset_cfg)


def collate(samples: list[dict]) -> dict:
    return pseudo_collate(samples)


def to_torchvision(batch: dict) -> tuple[list[torch.Tensor], list[dict]]:
    """visdet's packed batch (BGR uint8) as torchvision's inputs (RGB in [0, 1]) and targets."""
    images = [image[[2, 1, 0]].float() / 255 for image in batch["inputs"]]
    targets = []
    for sample in batch["data_samples"]:
        gt = sample.gt_instances
        targets.append({"boxes": gt.bboxes.float(), "labels": gt.labels + 1})
    return images, targets


def torchvision_faster_rcnn(depth: int, num_classes: int, size: int, zero_init_residual: bool = False,
                            **kwargs) -> nn.Module:
    """torchvision's FasterRCNN with a from-scratch ResNet-``depth`` FPN backbone (trainable BN, no weights).

    ``zero_init_residual`` matches visdet's backbone option (the main config sets it);
    ``resnet_fpn_backbone`` does not pass it on, so the ResNet is built first.
    """
    from torchvision.models import resnet
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    trunk = getattr(resnet, f"resnet{depth}")(weights=None, norm_layer=nn.BatchNorm2d,
                                              zero_init_residual=zero_init_residual)
    backbone = _resnet_fpn_extractor(trunk, trainable_layers=5)
    return FasterRCNN(backbone, num_classes=num_classes + 1, min_size=size, max_size=size, **kwargs)


def coco_map(ann_file: str, results: list[dict]) -> list[float]:
    """pycocotools' 12 bbox statistics for ``results`` (COCO json dicts), quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        if not results:
            return [0.0] * 12
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def native_cpu_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions and matmuls natively on this CPU (AVX-512 BF16/AMX), not emulated."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def thread_note() -> str:
    return f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads"
