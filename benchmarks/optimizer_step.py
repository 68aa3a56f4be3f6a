#!/usr/bin/env python
"""One AdamW step on the parameters of a Faster R-CNN R50-FPN: visdet vs memory bandwidth vs mmengine.

An AdamW step reads param, grad, exp_avg, exp_avg_sq and writes param,
exp_avg, exp_avg_sq: 28 bytes per fp32 parameter, so it cannot beat
``28 * n / bandwidth``. The bandwidth is measured in the same run with
in-place kernels (as an optimizer step is); the highest is used, which makes
the bound strictest. Compared, all with the same config (AdamW, norm and bias decay 0):

* visdet: the default build (merged groups, implementation picked for the device);
* mmengine: ``DefaultOptimWrapperConstructor`` (one group per parameter);
* torch default: ``torch.optim.AdamW(model.parameters())`` as most scripts write it.

Targets (issue 3): visdet within 1.15x of the bandwidth bound and at least
3x faster than mmengine. The parameter set is torchvision's
``fasterrcnn_resnet50_fpn`` built without weights (nothing is downloaded).

    python benchmarks/optimizer_step.py [--steps 30] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from collections.abc import Callable

import torch
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor

BYTES_PER_PARAM = 28
CONFIG = dict(
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(cases: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds per call of each case, timed in alternation so noise hits all alike."""
    for fn in cases.values():  # warm-up: state allocation, first-touch of pages
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bandwidth_kernels(device: torch.device, numel: int) -> dict[str, tuple[Callable[[], object], int]]:
    """In-place kernels (as an optimizer step is) and the bytes each moves per element.

    An out-of-place write also reads its destination first (write-allocate),
    which would understate the bandwidth and so loosen the bound.
    """
    a, b, c = (torch.rand(numel, device=device) for _ in range(3))
    return {
        "a.mul_(s)": (lambda: a.mul_(1.0), 8),  # read a, write a
        "a.lerp_(b, w)": (lambda: a.lerp_(b, 0.1), 12),  # read a, b, write a
        "a.addcmul_(b, c)": (lambda: a.addcmul_(b, c, value=1e-9), 16),  # read a, b, c, write a
    }


def make_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed rounds (median reported)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    MMLogger.get_instance("mmengine").setLevel(logging.WARNING)  # mmengine logs every parameter's options

    model = make_model(device)
    params = [p for p in model.parameters() if p.requires_grad]
    numel = sum(p.numel() for p in params)
    cfg = copy.deepcopy(CONFIG)
    visdet_opt = OptimWrapperConstructor(dict(optimizer=cfg["optimizer"]), cfg["paramwise_cfg"])(model).optimizer
    cfg = copy.deepcopy(CONFIG)
    mm_opt = DefaultOptimWrapperConstructor(dict(optimizer=cfg["optimizer"]), cfg["paramwise_cfg"])(
        make_model(device)
    ).optimizer
    torch_opt = torch.optim.AdamW(make_model(device).parameters(), lr=1e-4, weight_decay=0.05)

    kernels = bandwidth_kernels(device, numel)
    cases: dict[str, Callable[[], object]] = {name: fn for name, (fn, _) in kernels.items()}
    cases.update(visdet=visdet_opt.step, mmengine=mm_opt.step, torch=torch_opt.step)
    median = interleaved(cases, device, args.steps)
    bandwidths = {name: nbytes * numel / median[name] for name, (_, nbytes) in kernels.items()}
    best_bw = max(bandwidths.values())
    bound = BYTES_PER_PARAM * numel / best_bw
    t_visdet, t_mm, t_torch = median["visdet"], median["mmengine"], median["torch"]

    impl = "fused" if visdet_opt.defaults.get("fused") else "foreach" if visdet_opt.defaults.get("foreach") else "loop"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"parameters: {numel / 1e6:.1f} M in {len(params)} tensors")
    print("bandwidth: " + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bandwidths.items()))
    print(f"bound for one AdamW step ({BYTES_PER_PARAM} B/param at {best_bw / 1e9:.1f} GB/s): {bound * 1e3:.1f} ms")
    print(f"{'case':<46} {'groups':>6} {'ms/step':>8} {'x bound':>8}")
    rows = [
        (f"visdet default ({impl})", len(visdet_opt.param_groups), t_visdet),
        ("mmengine DefaultOptimWrapperConstructor", len(mm_opt.param_groups), t_mm),
        ("torch.optim.AdamW(model.parameters())", len(torch_opt.param_groups), t_torch),
    ]
    for name, groups, t in rows:
        print(f"{name:<46} {groups:>6} {t * 1e3:>8.1f} {t / bound:>8.2f}")
    print(f"visdet vs bound: {t_visdet / bound:.2f}x (target <= 1.15)")
    print(f"mmengine / visdet: {t_mm / t_visdet:.1f}x faster (target >= 3)")


if __name__ == "__main__":
    main()
