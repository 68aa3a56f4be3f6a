#!/usr/bin/env python
"""How long the main job (``tools/train.py configs/faster_rcnn_adamw.py``) takes on *this* machine.

Machines of the same kind differ in speed by 50% or more, so the README's
wall-clock figure is one machine's. This script measures this machine in about
a minute and projects the whole run from the config itself: it times
``--iters`` training iterations of the unchanged main config (R50-FPN, 160 px,
batch 2, fused AdamW, the real ``train_step``) and ``--val-images`` validation
images, then multiplies by the config's own counts (epochs x iterations per
epoch, validations x val images). It prints the projection and this machine's
speed as a ratio of the reference machine's, whose figures the README quotes.

    python benchmarks/main_job_estimate.py [--iters 8] [--val-images 16]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from _detection_common import REPO, collate, thread_note

#: The run the README's main-job figure comes from (2-core CPU, torch 2.14.1, 2026-12-02, after the
#: speed work): median seconds per training iteration and per validation image in that run's log.
REFERENCE_S_PER_ITER = 0.73
REFERENCE_S_PER_VAL_IMAGE = 0.24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--val-images", type=int, default=16)
    args = parser.parse_args()

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from visdet.datasets.embedded import EmbeddedDataSpec, ensure
    from visdet.registry import DATASETS, MODELS, OPTIM_WRAPPERS  # noqa: F401  (fills the registries)

    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py"))
    ensure(cfg.embedded_data.root, EmbeddedDataSpec.from_cfg(dict(cfg.embedded_data)))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    from mmengine.optim import build_optim_wrapper

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    val_set = DATASETS.build(cfg.val_dataloader.dataset)
    batch = cfg.train_dataloader.batch_size

    model.train()
    times = []
    for i in range(args.warmup + args.iters):
        data = collate([train_set[(i * batch + j) % len(train_set)] for j in range(batch)])
        start = time.perf_counter()
        model.train_step(data, optim_wrapper)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    s_per_iter = statistics.median(times)

    model.eval()
    val_times = []
    val_batch = cfg.val_dataloader.batch_size  # validation runs in the config's batches
    with torch.no_grad():
        for i in range(max(1, args.val_images // val_batch)):
            data = collate([val_set[(i * val_batch + j) % len(val_set)] for j in range(val_batch)])
            start = time.perf_counter()
            model.val_step(data)
            val_times.append((time.perf_counter() - start) / val_batch)
    s_per_val_image = statistics.median(val_times)

    epochs = cfg.train_cfg.max_epochs
    iters = epochs * math.ceil(len(train_set) / batch)
    validations = epochs // cfg.train_cfg.get("val_interval", 1)
    train_s = iters * s_per_iter
    val_s = validations * len(val_set) * s_per_val_image
    print(f"main job on this machine ({thread_note()}):")
    print(f"  training: {iters} iterations x {s_per_iter:.3f} s = {train_s / 60:.1f} min")
    print(f"  validation: {validations} x {len(val_set)} images x {s_per_val_image:.3f} s = {val_s / 60:.1f} min")
    print(f"  projected total: {(train_s + val_s) / 60:.1f} min (plus ~1 min of start-up and data generation)")
    print(f"  speed vs the README's reference machine: {REFERENCE_S_PER_ITER / s_per_iter:.2f}x per training "
          f"iteration ({s_per_iter:.3f} s here vs {REFERENCE_S_PER_ITER} s there), "
          f"{REFERENCE_S_PER_VAL_IMAGE / s_per_val_image:.2f}x per validation image")


if __name__ == "__main__":
    main()
