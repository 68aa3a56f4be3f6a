"""Can an optimizer run on this machine now, and if not, why not.

Checks are cheap and do not import the optimizer's package: install state
and discovery come from the catalogue; device and process conditions from
torch, which is already imported.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from visdet.engine.optim.catalog.spec import Need, OptimizerSpec

NEED_TEXT = {
    Need.CUDA: "needs a CUDA device (torch.cuda.is_available() is False here)",
    Need.DISTRIBUTED: "needs torch.distributed initialised (launch with tools/dist_train.sh or torchrun)",
    Need.DEEPSPEED_ENGINE: (
        "needs a DeepSpeed engine: DeepSpeed builds it inside deepspeed.initialize() "
        "(mmengine's DeepSpeedStrategy), passing itself as the `deepspeed` argument"
    ),
    Need.CXX_COMPILER: "needs a C++ compiler on PATH to JIT-compile its kernel (install g++)",
    Need.CLOSURE: (
        "needs a closure: step(closure) re-runs forward and backward on the same batch, which visdet's "
        "OptimWrapper and AmpOptimWrapper do (wrappers/drivers/closure.py) and DeepSpeed's/FSDP's engines do not"
    ),
    Need.CREATE_GRAPH: (
        "needs loss.backward(create_graph=True) for its Hessian-vector products, which visdet's "
        "OptimWrapper and AmpOptimWrapper do (wrappers/drivers/second_order.py) and DeepSpeed's/FSDP's engines do not"
    ),
    Need.PARAM_LAYOUT: "needs its own parameter-group layout, which visdet's constructor does not build (see notes)",
    Need.LORA_ADAPTERS: "needs LoRA adapter pairs (lora_A/lora_B), a model type visdet does not have",
    Need.BASE_OPTIMIZER: (
        "wraps another optimizer: nest its config, e.g. dict(type='Lookahead', optimizer=dict(type='AdamW', lr=1e-4))"
    ),
    Need.FP16_WEIGHTS: (
        "needs float16 weights (it keeps fp32 master copies and scales the loss in its own backward()), a model "
        "type visdet does not train; for float16 use optim_wrapper=dict(type='AmpOptimWrapper', dtype='float16')"
    ),
    Need.MODEL: "takes the model itself, not its parameters: pass model=... (see notes)",
    Need.OWN_LOOP: (
        "drives its own training-loop protocol (see notes), which visdet's closure driver does not follow"
    ),
}
#: Needs a build satisfies by passing this argument (a DeepSpeed engine passes ``deepspeed``).
MET_BY_ARGUMENT = {
    Need.DEEPSPEED_ENGINE: ("deepspeed",),
    Need.BASE_OPTIMIZER: ("base_optimizer", "optimizer"),
    Need.MODEL: ("model",),
}


#: Conditions taken as met while checking a config for a run that will meet them (see assume_met).
_ASSUMED: set[Need] = set()


@contextmanager
def assume_met(*needs: Need) -> Iterator[None]:
    """Treat ``needs`` as met inside the block.

    The pre-flight check of a ``--launcher pytorch`` run happens before the
    Runner creates the process group; ZeroRedundancyOptimizer's
    "needs torch.distributed" will hold by the time the optimizer is built.
    """
    added = set(needs) - _ASSUMED
    _ASSUMED.update(added)
    try:
        yield
    finally:
        _ASSUMED.difference_update(added)


def need_met(need: Need) -> bool:
    """Whether one condition holds in this process right now."""
    if need in _ASSUMED:
        return True
    if need is Need.CUDA:
        return torch.cuda.is_available()
    if need is Need.DISTRIBUTED:
        return torch.distributed.is_available() and torch.distributed.is_initialized()
    if need is Need.DEEPSPEED_ENGINE:
        return False  # only DeepSpeed's own engine can satisfy it
    if need is Need.CXX_COMPILER:
        return shutil.which(os.environ.get("CXX", "c++")) is not None
    if need is Need.BASE_OPTIMIZER:
        return True  # the config nests the optimizer it wraps (config/nested_optimizer.py)
    if need is Need.FP16_WEIGHTS:
        return False  # visdet's weights are float32 (AMP autocasts; it keeps no float16 weights)
    if need is Need.LORA_ADAPTERS:
        return False  # no visdet model has LoRA adapters
    if need is Need.CREATE_GRAPH:
        return True  # visdet's OptimWrapper drives it (wrappers/drivers/second_order.py)
    if need is Need.CLOSURE:
        return True  # visdet's OptimWrapper drives step(closure) (wrappers/drivers/closure.py)
    if need is Need.MODEL:
        return True  # visdet's constructor passes the model (build/model_argument.py)
    if need is Need.OWN_LOOP:
        return False  # no visdet driver follows an optimizer's own loop protocol
    if need is Need.PARAM_LAYOUT:
        return False  # met only by how it is built (a record with a layout), never by the machine
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
        if any(name in provided for name in MET_BY_ARGUMENT.get(need, ())):
            continue
        if need is Need.PARAM_LAYOUT and spec.layout:  # the constructor builds it (build/muon_layout.py)
            continue
        if not need_met(need):
            reasons.append(NEED_TEXT[need])
    return reasons
