#!/usr/bin/env python
"""Per-iteration cost of the optim wrapper over the same work written by hand.

``OptimWrapper.update_params(loss)`` does backward, gradient clipping,
the optimizer step and zero_grad, plus bookkeeping (accumulation counter,
logging the grad norm). Its overhead is the time it takes minus the time of
the hand-written ``loss.backward(); clip_grad_norm_(...); optimizer.step();
optimizer.zero_grad()`` on the same model, optimizer and clip settings.
Forward passes are not timed. Cases alternate so noise hits both alike; the
median over iterations is reported. Target (issue 3): overhead below 5% of
the raw step.

    python benchmarks/wrapper_overhead.py [--iters 30] [--model resnet18]
"""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time

import torch
import torchvision
from mmengine.logging import MMLogger

from visdet.engine.optim.build.constructor import OptimWrapperConstructor

CLIP = dict(max_norm=35.0, norm_type=2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--model", default="resnet18", help="a torchvision classification model name")
    parser.add_argument("--size", type=int, default=96, help="input image size")
    args = parser.parse_args()
    MMLogger.get_instance("mmengine").setLevel(logging.WARNING)

    torch.manual_seed(0)
    model_w = getattr(torchvision.models, args.model)(num_classes=10)
    model_r = copy.deepcopy(model_w)
    cfg = dict(optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05), clip_grad=CLIP)
    wrapper = OptimWrapperConstructor(copy.deepcopy(cfg))(model_w)
    raw_opt = OptimWrapperConstructor(copy.deepcopy(cfg))(model_r).optimizer  # same groups and implementation
    raw_params = [p for g in raw_opt.param_groups for p in g["params"]]
    x = torch.randn(2, 3, args.size, args.size)
    y = torch.randint(0, 10, (2,))

    def loss_of(model: torch.nn.Module) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x), y)

    def raw() -> float:
        loss = loss_of(model_r)
        start = time.perf_counter()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw_params, **CLIP)
        raw_opt.step()
        raw_opt.zero_grad()
        return time.perf_counter() - start

    def wrapped() -> float:
        loss = loss_of(model_w)
        start = time.perf_counter()
        wrapper.update_params(loss)
        return time.perf_counter() - start

    for _ in range(3):
        raw(), wrapped()
    t_raw, t_wrapped = [], []
    for _ in range(args.iters):
        t_raw.append(raw())
        t_wrapped.append(wrapped())
    raw_s, wrapped_s = statistics.median(t_raw), statistics.median(t_wrapped)
    overhead = wrapped_s - raw_s
    n = sum(p.numel() for p in raw_params)
    print(f"{args.model}: {n / 1e6:.1f} M parameters in {len(raw_params)} tensors, batch 2 at {args.size}px, "
          f"{wrapper.optimizer.defaults.get('fused') and 'fused' or 'foreach'} AdamW, clip_grad {CLIP}")
    print(f"raw backward+clip+step+zero_grad: {raw_s * 1e3:.1f} ms   update_params: {wrapped_s * 1e3:.1f} ms")
    print(f"overhead: {overhead * 1e3:+.2f} ms = {100 * overhead / raw_s:+.1f}% of the raw step (target < 5%)")


if __name__ == "__main__":
    main()
