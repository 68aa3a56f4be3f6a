#!/usr/bin/env python
"""One training iteration of Faster R-CNN R50-FPN: visdet vs torchvision, measured in the same run.

An iteration is forward, backward and AdamW step on a batch of 2 images at
320x320 from the embedded data set (the same batch for both). Settings are
aligned: RPN keeps 2000 boxes per level before NMS and 1000 after (visdet's
nms_pre/max_per_img, torchvision's rpn_{pre,post}_nms_top_n_train); both sample
256 anchors and 512 RoIs per image; AdamW is torch's fused kernel for both
(visdet builds it through its OptimWrapperConstructor, as training does).
Iterations alternate between the two models so drift in machine speed hits both.

Target (issue 4): visdet / torchvision <= 1.1.

    python benchmarks/detector_speed.py [--iters 5] [--size 320] [--depth 50]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from _detection_common import (build_dataset, collate, thread_note, to_torchvision, torchvision_faster_rcnn,
                               visdet_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--depth", type=int, default=50)
    args = parser.parse_args()

    from visdet.registry import MODELS, OPTIM_WRAPPERS  # noqa: F401
    from visdet.engine.optim.build.constructor import OptimWrapperConstructor

    cfg = visdet_config(args.depth, args.size, f"data/bench_shapes_{args.size}", num_train=8, num_val=1)
    cfg.model.train_cfg.rcnn.sampler.num = 512
    dataset = build_dataset(cfg, "train", flip=False)
    batch = collate([dataset[0], dataset[1]])

    torch.manual_seed(0)
    visdet_model = MODELS.build(cfg.model).train()
    wrapper = OptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4)))(visdet_model)

    tv_model = torchvision_faster_rcnn(args.depth, num_classes=4, size=args.size, rpn_pre_nms_top_n_train=2000,
                                       rpn_post_nms_top_n_train=1000, rpn_batch_size_per_image=256,
                                       box_batch_size_per_image=512).train()
    tv_optimizer = torch.optim.AdamW(tv_model.parameters(), lr=1e-4, fused=True)
    images, targets = to_torchvision(batch)

    def visdet_step() -> None:
        visdet_model.train_step(batch, wrapper)

    def torchvision_step() -> None:
        loss = sum(tv_model(images, targets).values())
        tv_optimizer.zero_grad()
        loss.backward()
        tv_optimizer.step()

    times: dict[str, list[float]] = {"visdet": [], "torchvision": []}
    for i in range(args.warmup + args.iters):
        for name, step in (("visdet", visdet_step), ("torchvision", torchvision_step)):
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    print(f"Faster R-CNN R{args.depth}-FPN, {args.size}x{args.size}, batch 2, one training iteration "
          f"({args.iters} measured after {args.warmup} warm-up, interleaved; {thread_note()})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name:12s} median {medians[name]:.3f} s   (min {min(values):.3f}, max {max(values):.3f})")
    ratio = medians["visdet"] / medians["torchvision"]
    print(f"  visdet / torchvision = {ratio:.3f}  (target <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
