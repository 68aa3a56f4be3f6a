"""torch-optimi (import name ``optimi``): low-precision-friendly optimizers.

Adds ``StableAdamW`` (AdamW with per-tensor update clipping), ``Adan``,
``Ranger``; its ``Adam``, ``AdamW``, ``SGD``, ``RAdam`` and ``Lion`` collide
with higher-ranked sources and are registered as ``optimi_Adam`` and so on.
Kahan summation keeps bf16 weights accurate: it adds a buffer only for
low-precision parameters.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

# Seen with torch-optimi 0.3.3: StableAdamW decides to use its Triton kernel
# before it has seen the parameters, so where Triton is installed (torch's
# CUDA builds ship it) its first CPU step fails ("0 active drivers").
_TRITON_CPU = (
    "optimi 0.3.3 picks its Triton kernel even for CPU parameters; on CPU pass triton=False "
    "(visdet's constructor passes foreach=True, which avoids it)"
)
_KAHAN = "+ a Kahan buffer for bf16/fp16 parameters"

SOURCE = Source(
    rank=80, package="torch-optimi", top_level="optimi",
    specs={
        "Adam": facts("Adam with optional Kahan summation and fully decoupled weight decay", 8, _KAHAN),
        "AdamW": facts("AdamW with optional Kahan summation and fully decoupled weight decay", 8, _KAHAN),
        "Adan": facts("Adan: adaptive Nesterov momentum (Xie et al., 2022)", 16, _KAHAN),
        "Lion": facts("Lion with optional Kahan summation", 4, _KAHAN),
        "RAdam": facts("Rectified Adam with optional Kahan summation", 8, _KAHAN),
        "Ranger": facts("Ranger: RAdam + Lookahead", 12, _KAHAN),
        "SGD": facts("SGD with optional Kahan summation and decoupled weight decay", 4,
                     "with momentum, 0 without; " + _KAHAN),
        "StableAdamW": facts(
            "StableAdamW: AdamW with AdaFactor-style per-tensor update clipping (Wortsman et al., 2023)",
            8, _KAHAN, notes=_TRITON_CPU),
    },
)
