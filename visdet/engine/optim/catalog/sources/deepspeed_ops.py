"""DeepSpeed: fused/CPU kernels and the 1-bit communication-compressed family.

What runs where was checked on a CPU-only machine with DeepSpeed 0.19.6: the
CPU accelerator builds kernels for DeepSpeedCPUAdam and FusedAdam only (a C++
JIT compile on first use); the CPU Adagrad/Lion kernels exist only for the
CUDA accelerator; the 1-bit optimizers need a DeepSpeed engine and
torch.distributed; ZenFlow optimizers are driven by the ZeRO-Offload engine.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

ADAM, LAMB, LION, ADAGRAD, ONEBIT = (
    "deepspeed.ops.adam",
    "deepspeed.ops.lamb",
    "deepspeed.ops.lion",
    "deepspeed.ops.adagrad",
    "deepspeed.runtime.fp16.onebit",
)
_ENGINE = (Need.CUDA, Need.DISTRIBUTED, Need.DEEPSPEED_ENGINE)
_NO_CPU_KERNEL = "DeepSpeed's CPU accelerator ships no kernel for it; needs the CUDA accelerator"

SOURCE = Source(
    rank=20, package="deepspeed", title="DeepSpeed", install_hint="pip install 'deepspeed<0.19.7'", prefix="ds_",
    export_modules=(ADAM, LAMB, LION, ADAGRAD, ONEBIT),
    removed={"OnebitAdam": "0.19.7", "OnebitLamb": "0.19.7", "ZeroOneAdam": "0.19.7"},
    default=facts(needs=(Need.DEEPSPEED_ENGINE,)),
    specs={
        "DeepSpeedCPUAdam": facts(
            "Vectorised C++ Adam/AdamW for parameters on the CPU (ZeRO-Offload)", 8,
            devices=("cpu",), needs=(Need.CXX_COMPILER,),
            notes="compiles a C++ kernel on first use (~45 s, cached in ~/.cache/torch_extensions)",
            module=ADAM, offload=True),
        "FusedAdam": facts(
            "Multi-tensor fused Adam/AdamW kernel", 8, needs=(Need.CXX_COMPILER,),
            notes="compiles its kernel on first use (~45 s on CPU, cached)", module=ADAM),
        "FusedLamb": facts("Fused LAMB kernel for large-batch training", 8, devices=("cuda",), needs=(Need.CUDA,),
                           module=LAMB),
        "FusedLion": facts("Fused Lion kernel", 4, devices=("cuda",), needs=(Need.CUDA,), module=LION),
        "DeepSpeedCPULion": facts("C++ Lion for CPU-offloaded parameters", 4, devices=("cpu",), needs=(Need.CUDA,),
                                  notes=_NO_CPU_KERNEL, module=LION),
        "DeepSpeedCPUAdagrad": facts("C++ Adagrad for CPU-offloaded parameters", 4, devices=("cpu",),
                                     needs=(Need.CUDA,), notes=_NO_CPU_KERNEL, module=ADAGRAD),
        "OnebitAdam": facts("1-bit Adam: error-compensated compressed communication after warm-up", 12,
                            "+ error-feedback buffers", ("cuda",), _ENGINE, module=ONEBIT, engine_name="OneBitAdam"),
        "OnebitLamb": facts("1-bit LAMB: compressed communication for large batches", 12,
                            "+ error-feedback buffers", ("cuda",), _ENGINE, module=ONEBIT, engine_name="OneBitLamb"),
        "ZeroOneAdam": facts("0/1 Adam: adaptive variance freezing and 1-bit sync", 12,
                             "+ error-feedback buffers", ("cuda",), _ENGINE, module=ONEBIT, engine_name="ZeroOneAdam"),
        "ZenFlowCPUAdam": facts("ZenFlow's CPU Adam for stall-free offloading", 8,
                                needs=(Need.DEEPSPEED_ENGINE,), module=ADAM),
        "ZenFlowSelectiveAdamW": facts("ZenFlow's selective AdamW for important columns", 8,
                                       needs=(Need.DEEPSPEED_ENGINE,), module=ADAM),
        "ZenFlowSelectiveAdamW_stage3": facts("ZenFlow's selective AdamW under ZeRO stage 3", 8,
                                              needs=(Need.DEEPSPEED_ENGINE,), module=ADAM),
    },
)
