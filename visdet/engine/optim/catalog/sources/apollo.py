"""apollo-torch: APOLLO, AdamW-like scaling from a random low-rank projection.

APOLLO keeps Adam moments of a randomly projected gradient only to estimate
per-channel (or per-tensor) learning-rate scales, then applies them to the
full gradient: SGD-like memory with AdamW-like results. The projected group
comes from ``optim_wrapper.low_rank``, as for GaLore. The package also ships
its own copies of GaLore's optimizers, registered as ``apollo_torch_GaLore*``
since galore-torch ranks higher.
"""
from __future__ import annotations

from dataclasses import replace

from visdet.engine.optim.catalog.notes import LOW_RANK
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.sources.galore import SPECS as GALORE_SPECS
from visdet.engine.optim.catalog.spec import Need, facts

SOURCE = Source(
    rank=100, package="apollo-torch",
    default=facts(notes=LOW_RANK, low_rank="galore"),
    specs={
        "APOLLOAdamW": facts(
            "APOLLO: AdamW-like channel-wise lr scaling from a random low-rank projection (Zhu et al., 2024)",
            None, "8 for plain groups; rank x cols for projected weights", notes=LOW_RANK, low_rank="apollo"),
        # Seen with apollo-torch 1.0.3 and bitsandbytes 0.50: its step calls
        # torch.cuda.synchronize() and reads a config key bitsandbytes no longer gives.
        "QAPOLLOAdamW": facts(
            "Q-APOLLO: APOLLO on bitsandbytes' 8-bit state", None, "~2 for plain groups; low-rank for projected",
            ("cuda",), (Need.CUDA,),
            notes="its step calls torch.cuda.synchronize(), and with bitsandbytes 0.50 fails on a missing "
            "'percentile_clipping' config key; " + LOW_RANK, low_rank="apollo"),
        **{name: replace(spec, description=f"apollo-torch's copy of {spec.description}")
           for name, spec in GALORE_SPECS.items()},
    },
)
