"""torchao: Adam/AdamW with 8-bit, 4-bit and FP8 optimizer state, in plain PyTorch + torch.compile.

``AdamW8bit`` and ``Adam8bit`` are already bitsandbytes' names (a higher-ranked
source), so they are registered as ``torchao_AdamW8bit`` and ``torchao_Adam8bit``;
the 4-bit and FP8 classes keep their own names. The private ``_AdamW`` (for
torchao's quantised training, which visdet does not do) is not registered.

Each step compiles one small function per parameter shape with torch.compile
(inductor, which needs a C++ compiler on CPU): the first step of a detector
takes tens of seconds, later ones are fast. torchao keeps ``lr`` as a 0-d
tensor in each group and refuses a float there; visdet's constructor keeps
mmengine's schedulers working (``build/tensor_lr.py``).
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec, facts

#: Measured on this machine (torchao 0.18.0, torch 2.14.1, 2 CPU threads, g++ 13): the first step of a
#: two-layer MLP took 5-47 s (the first class compiled in a process pays inductor's start-up), later steps
#: ~10-100 ms.
_COMPILE = (
    "every step runs a torch.compile'd kernel per parameter shape (inductor; on CPU it needs a C++ "
    "compiler): the first steps take seconds to a minute while they compile, later ones are fast; "
    "lr is a tensor in each group (visdet's constructor keeps schedulers writing it working)"
)
_SMALL = "tensors under 4096 values (or not a multiple of the block) keep fp32 state"
# State per fp32 parameter: two moments, each codes + one fp32 scale per block.
_8BIT = round(2 * (1 + 4 / 256), 4)  # block 256
_4BIT = round(2 * (0.5 + 4 / 128), 4)  # block 128, two codes per byte
_NOTES = f"{_COMPILE}; {_SMALL}"
_NEEDS = (Need.CXX_COMPILER,)


def _adam(title: str, state: float, kind: str) -> OptimizerSpec:
    return facts(f"{title} with {kind} block-wise optimizer state (torchao)", state, "approx.; small tensors keep fp32",
                 needs=_NEEDS, notes=_NOTES)


SOURCE = Source(
    rank=125, package="torchao", export_modules=("torchao.optim",),
    install_hint="pip install 'torchao>=0.18,<0.19'",
    default=facts(needs=_NEEDS, notes=_COMPILE),
    specs={
        "AdamW8bit": _adam("AdamW", _8BIT, "8-bit"),
        "AdamW4bit": _adam("AdamW", _4BIT, "4-bit"),
        "AdamWFp8": _adam("AdamW", _8BIT, "FP8 (e4m3)"),
        "Adam8bit": _adam("Adam", _8BIT, "8-bit"),
        "Adam4bit": _adam("Adam", _4BIT, "4-bit"),
        "AdamFp8": _adam("Adam", _8BIT, "FP8 (e4m3)"),
        "CPUOffloadOptimizer": facts(
            "Any optimizer stepped on CPU copies of the parameters, overlapping the copies with backward", None,
            "the inner optimizer's, in CPU memory", ("cuda",), (Need.CUDA,),
            "torchao 0.18 refuses to build it without a CUDA or XPU device; optimizer_class= names the inner "
            "optimizer (default torch's AdamW, fused)"),
    },
)
