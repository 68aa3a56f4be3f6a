#!/usr/bin/env python
"""One training iteration of Faster R-CNN R50-FPN: visdet vs torchvision, measured in the same run.

An iteration is forward, backward and AdamW step on a batch of 2 images from
the embedded data set (the same batch, the same pixels and boxes for both).
Settings are aligned: RPN keeps 2000 boxes per level before NMS and 1000 after
(visdet's nms_pre/max_per_img, torchvision's rpn_{pre,post}_nms_top_n_train);
both sample 256 anchors and 512 RoIs per image; RoIAlign samples 2x2 points
per bin in both; AdamW is torch's fused kernel for both (visdet builds it
through its OptimWrapperConstructor, as training does). Iterations of all
variants are interleaved so drift in machine speed hits each alike.

Printed:

* median seconds per iteration of visdet, torchvision, and, for the
  record, visdet pooling with torchvision's RoIAlign kernel (what visdet did
  before its sparse-matrix RoIAlign) and visdet under bf16 autocast (reduced
  precision: a separate path, never the default; its mAP is the main job's
  ``--amp`` run in the README) where the device computes bf16 natively (on a
  CPU without AVX-512 BF16 oneDNN emulates it, ~11x slower than fp32: the
  line says it was skipped);
* ``visdet / torchvision`` against the target (issue 17: <= 0.8) — the fp32 path;
* the fp32 path's equivalence: the losses of 3 training steps from the same
  weights with visdet's RoIAlign and with torchvision's kernel (their largest
  relative difference, float rounding);
* a torch.profiler breakdown of an iteration of each detector by stage
  (backbone, neck, RPN, anchors, target assignment, proposals, RoIAlign, box
  head, losses, optimizer step; forward and backward apart), the share of
  the convolution and matrix-product kernels in it (the part no change that
  keeps the model's work and fp32 can shorten, short of faster kernels), and
  the data loading of a batch.

    python benchmarks/detector_speed.py [--iters 5] [--size 320] [--depth 50] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.models.detection.roi_heads as tv_roi_heads

import _iteration_profile as prof
from _detection_common import (build_dataset, collate, native_cpu_bf16, thread_note, to_torchvision,
                               torchvision_faster_rcnn, visdet_config)

TARGET = 0.8


def _build_visdet(cfg, device: str):
    from visdet.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train().to(device)
    return model, _wrapper(model)


def _wrapper(model):
    from visdet.engine.optim.build.constructor import OptimWrapperConstructor

    return OptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4)))(model)


def _mark_visdet(model, wrapper) -> None:
    rpn, roi = model.rpn_head, model.roi_head
    for module, name in ((model.data_preprocessor, "data preprocessing"), (model.backbone, "backbone"),
                         (model.neck, "neck"), (rpn, "RPN head"), (roi.bbox_roi_extractor, "RoIAlign"),
                         (roi.bbox_head, "box head"), (rpn.loss_cls, "losses"), (rpn.loss_bbox, "losses"),
                         (roi.bbox_head.loss_cls, "losses"), (roi.bbox_head.loss_bbox, "losses")):
        prof.mark_module(module, name)
    for owner, attr, name in ((rpn.prior_generator, "grid_priors", "anchors"),
                              (rpn.assigner, "assign", "target assignment"),
                              (rpn.sampler, "sample", "target assignment"),
                              (rpn.bbox_coder, "encode", "target assignment"),
                              (roi.bbox_assigner, "assign", "target assignment"),
                              (roi.bbox_sampler, "sample", "target assignment"),
                              (roi.bbox_head, "get_targets", "target assignment"),
                              (rpn, "predict_by_feat", "proposals (decode, NMS)"),
                              (wrapper.optimizer, "step", "optimizer step"),
                              (wrapper.optimizer, "zero_grad", "optimizer step")):
        prof.mark_method(owner, attr, name)


class _Staged:
    """A callable attribute (torchvision's fg_bg_sampler) run inside a stage."""

    def __init__(self, fn: Callable, name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, *args, **kwargs):
        with prof.stage(self.name):
            return self.fn(*args, **kwargs)


def _mark_torchvision(model, optimizer) -> None:
    rpn, roi = model.rpn, model.roi_heads
    for module, name in ((model.transform, "data preprocessing"), (model.backbone.body, "backbone"),
                         (model.backbone.fpn, "neck"), (rpn.head, "RPN head"), (rpn.anchor_generator, "anchors"),
                         (roi.box_roi_pool, "RoIAlign"), (roi.box_head, "box head"), (roi.box_predictor, "box head")):
        prof.mark_module(module, name)
    for owner, attr, name in ((rpn, "assign_targets_to_anchors", "target assignment"),
                              (rpn.box_coder, "encode", "target assignment"),
                              (roi, "select_training_samples", "target assignment"),
                              (rpn, "filter_proposals", "proposals (decode, NMS)"),
                              (rpn.box_coder, "decode", "proposals (decode, NMS)"),
                              (rpn, "compute_loss", "losses"),
                              (optimizer, "step", "optimizer step"), (optimizer, "zero_grad", "optimizer step")):
        prof.mark_method(owner, attr, name)
    rpn.fg_bg_sampler = _Staged(rpn.fg_bg_sampler, "target assignment")
    tv_roi_heads.fastrcnn_loss = _Staged(tv_roi_heads.fastrcnn_loss, "losses")


def _losses_of_steps(model, batch, steps: int, sparse: bool) -> list[float]:
    """Total loss of ``steps`` training steps of a copy of ``model`` (seeded, so both copies sample alike)."""
    model = copy.deepcopy(model)
    model.roi_head.bbox_roi_extractor.sparse_on_cpu = sparse
    wrapper = _wrapper(model)
    out = []
    for step in range(steps):
        torch.manual_seed(step)
        losses = model.train_step(batch, wrapper)
        out.append(float(sum(v.detach() for k, v in losses.items() if "loss" in k)))
    return out


def _first_gradient(model, batch, sparse: bool) -> torch.Tensor:
    """All parameter gradients of one forward/backward of a copy of ``model``, as one vector."""
    model = copy.deepcopy(model)
    model.roi_head.bbox_roi_extractor.sparse_on_cpu = sparse
    torch.manual_seed(0)
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode="loss")
    sum(v for k, v in losses.items() if "loss" in k).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _print_breakdown(columns: dict[str, dict[str, float]], totals: dict[str, float]) -> None:
    order = ["data preprocessing", "backbone", "neck", "RPN head", "anchors", "target assignment",
             "proposals (decode, NMS)", "RoIAlign", "box head", "losses", "optimizer step", "other"]
    names = list(columns)
    print(f"  {'stage (s per iteration)':34s}" + "".join(f"{n:>26s}" for n in names))
    rows = []
    for stage in order:
        for part in ("forward", "backward") if stage not in ("optimizer step", "other") else ("",):
            key = f"{stage} ({part})" if part else stage
            rows.append(key)
    rows.append("other (backward)")
    for key in rows:
        values = [columns[n].get(key, 0.0) for n in names]
        if max(values) < 0.0005:
            continue
        cells = "".join(f"{v:17.3f} ({100 * v / totals[n]:4.1f}%)" for v, n in zip(values, names))
        print(f"  {key:34s}{cells}")
    print(f"  {'total (profiled)':34s}" + "".join(f"{totals[n]:17.3f}        " for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-profile", action="store_true", help="skip the stage breakdown")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")

    cfg = visdet_config(args.depth, args.size, f"data/bench_shapes_{args.size}", num_train=8, num_val=1)
    cfg.model.train_cfg.rcnn.sampler.num = 512
    dataset = build_dataset(cfg, "train", flip=False)
    start = time.perf_counter()
    batch = collate([dataset[0], dataset[1]])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    images, targets = to_torchvision(batch)
    convert_s = time.perf_counter() - start
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

    visdet_model, wrapper = _build_visdet(cfg, device)
    initial = copy.deepcopy(visdet_model)
    kernel_model = copy.deepcopy(visdet_model)
    kernel_model.roi_head.bbox_roi_extractor.sparse_on_cpu = False
    kernel_wrapper = _wrapper(kernel_model)
    bf16_model = copy.deepcopy(visdet_model)
    bf16_wrapper = _wrapper(bf16_model)

    tv_model = torchvision_faster_rcnn(args.depth, num_classes=4, size=args.size, rpn_pre_nms_top_n_train=2000,
                                       rpn_post_nms_top_n_train=1000, rpn_batch_size_per_image=256,
                                       box_batch_size_per_image=512).train().to(device)
    tv_optimizer = torch.optim.AdamW(tv_model.parameters(), lr=1e-4, fused=True)

    def torchvision_step() -> None:
        loss = sum(tv_model(images, targets).values())
        tv_optimizer.zero_grad()
        loss.backward()
        tv_optimizer.step()

    def bf16_step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            bf16_model.train_step(batch, bf16_wrapper)

    steps: dict[str, Callable[[], None]] = {
        "visdet": lambda: visdet_model.train_step(batch, wrapper),
        "torchvision": torchvision_step,
        "visdet, torchvision's RoIAlign": lambda: kernel_model.train_step(batch, kernel_wrapper),
        "visdet, bf16 autocast": bf16_step,
    }
    if device != "cpu":  # the sparse RoIAlign is the CPU path; on CUDA both use torchvision's kernel
        del steps["visdet, torchvision's RoIAlign"]
    bf16_skipped = device == "cpu" and not native_cpu_bf16()
    if bf16_skipped:
        del steps["visdet, bf16 autocast"]
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.iters):
        for name, step in steps.items():
            if device == "cuda":
                torch.cuda.synchronize()
            begin = time.perf_counter()
            step()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - begin)

    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"Faster R-CNN R{args.depth}-FPN, {args.size}x{args.size}, batch 2, one training iteration on {where} "
          f"({args.iters} measured after {args.warmup} warm-up, interleaved; {thread_note()})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["torchvision"]
    for name, values in times.items():
        print(f"  {name:32s} median {medians[name]:.3f} s  (min {min(values):.3f}, max {max(values):.3f})  "
              f"= {medians[name] / base:.3f} x torchvision")
    if bf16_skipped:
        print(f"  {'visdet, bf16 autocast':32s} skipped: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no "
              "native bf16, oneDNN would emulate it (~11x slower than fp32 on an AVX2 machine)")
    ratio = medians["visdet"] / base
    print(f"  visdet / torchvision = {ratio:.3f} (fp32; target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")

    if device == "cpu":
        sparse = _losses_of_steps(initial, batch, 3, sparse=True)
        kernel = _losses_of_steps(initial, batch, 3, sparse=False)
        worst = max(abs(a - b) / abs(b) for a, b in zip(sparse, kernel))
        grad_sparse, grad_kernel = _first_gradient(initial, batch, True), _first_gradient(initial, batch, False)
        grad_diff = float((grad_sparse - grad_kernel).norm() / grad_kernel.norm())
        print(f"  fp32 equivalence, visdet's RoIAlign vs torchvision's kernel from the same weights and samples: "
              f"first gradient relative difference {grad_diff:.1e} (float rounding); total loss of 3 AdamW steps "
              f"{[round(v, 6) for v in sparse]} vs {[round(v, 6) for v in kernel]} "
              f"(largest relative difference {worst:.1e}: Adam's first steps amplify rounding in tiny gradients)")
    print(f"  data loading of the batch (visdet's pipeline, used by both): {load_s:.3f} s; "
          f"conversion to torchvision's inputs {convert_s:.3f} s")

    if args.no_profile or device != "cpu":
        return
    _mark_visdet(visdet_model, wrapper)
    _mark_torchvision(tv_model, tv_optimizer)
    columns, totals, kernel_shares = {}, {}, {}
    for name in ("visdet", "torchvision"):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as trace:
            for _ in range(2):
                steps[name]()
        columns[name] = prof.breakdown(trace, 2)
        kernel_shares[name] = prof.dense_kernel_seconds(trace, 2), sum(columns[name].values())
        totals[name] = sum(columns[name].values())
    print("torch.profiler breakdown (2 iterations each; op self time charged to the stage that ran it, "
          "backward ops to the stage of their forward op):")
    _print_breakdown(columns, totals)
    for name in columns:
        dense, total = kernel_shares[name]
        print(f"  {name}: convolution and matrix-product kernels {dense:.3f} s of {total:.3f} s per iteration "
              f"({100 * dense / total:.0f}%: what no fp32 change that keeps the model's work can remove)")


if __name__ == "__main__":
    main()
