#!/usr/bin/env python
"""bitsandbytes' 8-bit AdamW against torch's fused fp32 AdamW, one step on the CPU.

The figure behind the note the listing and the build log give for
bitsandbytes' 8-bit optimizers on CPU parameters (issue 6). The parameter set
is ~26.5 M fp32 values in 2-D tensors large enough for 8-bit state (above
``min_8bit_size``); gradients are fixed random tensors, so only the optimizer
step is timed. Steps of the two are interleaved so that machine noise hits
both alike; the figure is the median.

    python benchmarks/bnb_cpu_step.py [--steps 10] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from visdet.utils.quiet_import import quiet_import

SHAPES = [(1024, 1024)] * 25 + [(1024, 512)]  # 26.74 M values


def make_params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape) * 0.02) for shape in SHAPES]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bnb_optim = quiet_import("bitsandbytes.optim")
    cases = {
        "torch AdamW fp32 fused": torch.optim.AdamW(make_params(), lr=1e-3, fused=True),
        "bitsandbytes AdamW8bit": bnb_optim.AdamW8bit(make_params(), lr=1e-3),
    }
    n = sum(p.numel() for p in cases["torch AdamW fp32 fused"].param_groups[0]["params"])
    for optimizer in cases.values():  # warm-up: state allocation, first touch of pages
        optimizer.step()
        optimizer.step()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.steps):
        for name, optimizer in cases.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"{n / 1e6:.2f} M fp32 parameters, {torch.get_num_threads()} threads, median of {args.steps} steps")
    for name, ms in median.items():
        print(f"  {name:<24} {ms:8.1f} ms/step")
    ratio = median["bitsandbytes AdamW8bit"] / median["torch AdamW fp32 fused"]
    print(f"  ratio 8-bit / fused fp32: {ratio:.1f}x")


if __name__ == "__main__":
    main()
