#!/usr/bin/env python
"""Accuracy parity: visdet's Faster R-CNN vs torchvision's, trained the same way in one script.

Both detectors are trained from scratch on the embedded shapes data with the same
backbone depth, image size, batch, optimizer (AdamW, weight decay 0.05, grad-norm
clip 10), linear warmup + cosine schedule, iterations, and the same sequence of
images and flips (visdet's pipeline produces each batch once; torchvision gets the
same pixels as RGB floats). Both are then scored by pycocotools on the val split.

Target (issue 4): visdet's bbox mAP within 3 points of torchvision's.

    python benchmarks/parity_torchvision.py [--depth 50] [--size 160] [--iters 1000] [--lr 3e-4]

The defaults are the main config's model, image size and optimizer (R50-FPN with
zero-initialised residual branches, 160 px, AdamW 3e-4); 1000 iterations take
~25 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from _detection_common import (build_dataset, coco_map, collate, thread_note, to_torchvision,
                               torchvision_faster_rcnn, visdet_config)


def schedule(iters: int, warmup: int):
    def factor(i: int) -> float:
        if i < warmup:
            return 0.01 + 0.99 * i / warmup
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, iters - warmup)))
    return factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--num-val", type=int, default=100)
    args = parser.parse_args()

    from visdet.registry import MODELS

    data_root = f"data/parity_shapes_{args.size}"
    cfg = visdet_config(args.depth, args.size, data_root, args.num_train, args.num_val)
    train_sets = {flip: build_dataset(cfg, "train", flip=flip) for flip in (False, True)}
    val_set = build_dataset(cfg, "val")
    num_classes = len(cfg.classes)

    torch.manual_seed(0)
    visdet_model = MODELS.build(cfg.model)
    rcnn = cfg.model.train_cfg
    tv_model = torchvision_faster_rcnn(
        args.depth, num_classes, args.size, zero_init_residual=bool(cfg.model.backbone.get("zero_init_residual")),
        rpn_pre_nms_top_n_train=rcnn.rpn_proposal.nms_pre, rpn_post_nms_top_n_train=rcnn.rpn_proposal.max_per_img,
        rpn_pre_nms_top_n_test=cfg.model.test_cfg.rpn.nms_pre,
        rpn_post_nms_top_n_test=cfg.model.test_cfg.rpn.max_per_img,
        box_batch_size_per_image=rcnn.rcnn.sampler.num, box_detections_per_img=cfg.model.test_cfg.rcnn.max_per_img)
    models = {"visdet": visdet_model, "torchvision": tv_model}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=0.05, fused=True)
                  for name, m in models.items()}
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, schedule(args.iters, args.warmup))
                  for name, opt in optimizers.items()}
    seconds = {name: 0.0 for name in models}
    for model in models.values():
        model.train()

    rng = np.random.default_rng(0)
    order: list[int] = []
    for it in range(args.iters):
        samples = []
        for _ in range(2):
            if not order:
                order = list(rng.permutation(len(train_sets[False])))
            samples.append(train_sets[bool(rng.random() < 0.5)][order.pop()])
        batch = collate(samples)
        images, targets = to_torchvision(batch)
        losses = {}
        for name, model in models.items():
            start = time.perf_counter()
            if name == "visdet":
                data = model.data_preprocessor(batch, True)
                parts = model(**data, mode="loss")
                loss = sum(v for k, v in parts.items() if "loss" in k)
            else:
                loss = sum(model(images, targets).values())
            optimizers[name].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizers[name].step()
            schedulers[name].step()
            seconds[name] += time.perf_counter() - start
            losses[name] = float(loss.detach())
        if it % 50 == 0 or it == args.iters - 1:
            print(f"iter {it:4d}  " + "  ".join(f"{n} loss {v:.3f}" for n, v in losses.items()), flush=True)

    results: dict[str, list[dict]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
    with torch.no_grad():
        for index in range(len(val_set)):
            batch = collate([val_set[index]])
            sample = batch["data_samples"][0]
            image_id = sample.metainfo["img_id"]
            prediction = visdet_model.test_step(batch)[0].pred_instances
            tv_out = tv_model(to_torchvision(batch)[0])[0]
            for name, boxes, scores, labels in (
                    ("visdet", prediction.bboxes, prediction.scores, prediction.labels),
                    ("torchvision", tv_out["boxes"] / _scale(sample), tv_out["scores"], tv_out["labels"] - 1)):
                for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                    results[name].append({"image_id": image_id, "category_id": int(label) + 1, "score": score,
                                          "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})

    ann_file = f"{data_root}/annotations/instances_val.json"
    stats = {name: coco_map(ann_file, res) for name, res in results.items()}
    print(f"\nFaster R-CNN R{args.depth}-FPN from scratch, {args.size}x{args.size}, batch 2, AdamW lr {args.lr}, "
          f"{args.iters} iterations, {args.num_train} train / {args.num_val} val images ({thread_note()})")
    print(f"  {'':12s} {'bbox_mAP':>9s} {'mAP_50':>8s} {'mAP_75':>8s}  train s/iter")
    for name in models:
        s = stats[name]
        print(f"  {name:12s} {s[0]:9.3f} {s[1]:8.3f} {s[2]:8.3f}  {seconds[name] / args.iters:.2f}")
    gap = (stats["visdet"][0] - stats["torchvision"][0]) * 100
    print(f"  visdet - torchvision = {gap:+.1f} mAP points (target: within 3: {'met' if abs(gap) <= 3 else 'NOT met'})")


def _scale(sample) -> torch.Tensor:
    """torchvision's boxes are in the resized image; map them to the original one like visdet's."""
    w_scale, h_scale = sample.metainfo["scale_factor"]
    return torch.tensor([w_scale, h_scale, w_scale, h_scale])


if __name__ == "__main__":
    main()
