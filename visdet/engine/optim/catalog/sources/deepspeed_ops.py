"""DeepSpeed: fused/CPU kernels and the 1-bit communication-compressed family.

What runs where was checked on a CPU-only machine with DeepSpeed 0.19.6: the
CPU accelerator builds kernels for DeepSpeedCPUAdam and FusedAdam only (a C++
JIT compile on first use); the CPU Adagrad/Lion kernels exist only for the
CUDA accelerator; the 1-bit optimizers need a DeepSpeed engine and
torch.distributed; ZenFlow optimizers are driven by the ZeRO-Offload engine.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta, Need
from visdet.engine.optim.catalog.source import Found, Source

ADAM, LAMB, LION, ADAGRAD, ONEBIT = (
    "deepspeed.ops.adam",
    "deepspeed.ops.lamb",
    "deepspeed.ops.lion",
    "deepspeed.ops.adagrad",
    "deepspeed.runtime.fp16.onebit",
)
_ENGINE = (Need.CUDA, Need.DISTRIBUTED, Need.DEEPSPEED_ENGINE)

CATALOGUE: dict[str, tuple[str, Meta]] = {
    "DeepSpeedCPUAdam": (ADAM, Meta(
        "Vectorised C++ Adam/AdamW for parameters on the CPU (ZeRO-Offload)", 8,
        devices=("cpu",), needs=(Need.CXX_COMPILER,),
        notes="compiles a C++ kernel on first use (~45 s, cached in ~/.cache/torch_extensions)")),
    "FusedAdam": (ADAM, Meta(
        "Multi-tensor fused Adam/AdamW kernel", 8, needs=(Need.CXX_COMPILER,),
        notes="compiles its kernel on first use (~45 s on CPU, cached)")),
    "FusedLamb": (LAMB, Meta("Fused LAMB kernel for large-batch training", 8, devices=("cuda",), needs=(Need.CUDA,))),
    "FusedLion": (LION, Meta("Fused Lion kernel", 4, devices=("cuda",), needs=(Need.CUDA,))),
    "DeepSpeedCPULion": (LION, Meta(
        "C++ Lion for CPU-offloaded parameters", 4, devices=("cpu",), needs=(Need.CUDA,),
        notes="DeepSpeed's CPU accelerator ships no kernel for it; needs the CUDA accelerator")),
    "DeepSpeedCPUAdagrad": (ADAGRAD, Meta(
        "C++ Adagrad for CPU-offloaded parameters", 4, devices=("cpu",), needs=(Need.CUDA,),
        notes="DeepSpeed's CPU accelerator ships no kernel for it; needs the CUDA accelerator")),
    "OnebitAdam": (ONEBIT, Meta(
        "1-bit Adam: error-compensated compressed communication after warm-up", 12,
        "+ error-feedback buffers", ("cuda",), _ENGINE)),
    "OnebitLamb": (ONEBIT, Meta("1-bit LAMB: compressed communication for large batches", 12,
                                "+ error-feedback buffers", ("cuda",), _ENGINE)),
    "ZeroOneAdam": (ONEBIT, Meta("0/1 Adam: adaptive variance freezing and 1-bit sync", 12,
                                 "+ error-feedback buffers", ("cuda",), _ENGINE)),
    "ZenFlowCPUAdam": (ADAM, Meta("ZenFlow's CPU Adam for stall-free offloading", 8,
                                  needs=(Need.DEEPSPEED_ENGINE,))),
    "ZenFlowSelectiveAdamW": (ADAM, Meta("ZenFlow's selective AdamW for important columns", 8,
                                         needs=(Need.DEEPSPEED_ENGINE,))),
    "ZenFlowSelectiveAdamW_stage3": (ADAM, Meta("ZenFlow's selective AdamW under ZeRO stage 3", 8,
                                                needs=(Need.DEEPSPEED_ENGINE,))),
}


class DeepSpeedSource(Source):
    """Optimizers from DeepSpeed's ops and 1-bit packages."""

    def __init__(self) -> None:
        super().__init__(
            package="deepspeed",
            top_level="deepspeed",
            title="DeepSpeed",
            install_hint="pip install 'deepspeed<0.19.7'",
            prefix="ds_",
            export_modules=(ADAM, LAMB, LION, ADAGRAD, ONEBIT),
            known=tuple(Found(name, module) for name, (module, _) in CATALOGUE.items()),
            removed={"OnebitAdam": "0.19.7", "OnebitLamb": "0.19.7", "ZeroOneAdam": "0.19.7"},
        )

    def meta(self, class_name: str) -> Meta:
        entry = CATALOGUE.get(class_name)
        return entry[1] if entry else Meta(needs=(Need.DEEPSPEED_ENGINE,))
