"""Can an optimizer run on this machine now, and if not, why not.

Checks are cheap and do not import the optimizer's package: install state
and discovery come from the catalogue; device and process conditions from
torch, which is already imported.
"""
from __future__ import annotations

import os
import shutil

import torch

from .catalog import Need, OptimizerSpec

NEED_TEXT = {
    Need.CUDA: "needs a CUDA device (torch.cuda.is_available() is False here)",
    Need.DISTRIBUTED: "needs torch.distributed initialised (launch with tools/dist_train.sh or torchrun)",
    Need.DEEPSPEED_ENGINE: (
        "needs a DeepSpeed engine: DeepSpeed builds it inside deepspeed.initialize() "
        "(mmengine's DeepSpeedStrategy), passing itself as the `deepspeed` argument"
    ),
    Need.CXX_COMPILER: "needs a C++ compiler on PATH to JIT-compile its kernel (install g++)",
}


def need_met(need: Need) -> bool:
    """Whether one condition holds in this process right now."""
    if need is Need.CUDA:
        return torch.cuda.is_available()
    if need is Need.DISTRIBUTED:
        return torch.distributed.is_available() and torch.distributed.is_initialized()
    if need is Need.DEEPSPEED_ENGINE:
        return False  # only DeepSpeed's own engine can satisfy it
    if need is Need.CXX_COMPILER:
        return shutil.which(os.environ.get("CXX", "c++")) is not None
    raise ValueError(f"unknown need {need!r}")


def unmet_needs(spec: OptimizerSpec, provided: frozenset[str] = frozenset()) -> list[str]:
    """Human reasons for each unmet condition of ``spec``.

    Args:
        spec: The optimizer.
        provided: Constructor arguments the caller passes; a ``deepspeed``
            argument means a DeepSpeed engine is building the optimizer.
    """
    reasons = []
    for need in spec.needs:
        if need is Need.DEEPSPEED_ENGINE and "deepspeed" in provided:
            continue
        if not need_met(need):
            reasons.append(NEED_TEXT[need])
    return reasons
