"""galore-torch: GaLore, AdamW/Adafactor on gradients projected to a low rank.

The projection applies to the parameter groups that carry ``rank``; visdet's
constructor builds that group from ``optim_wrapper.low_rank`` (the modules
whose 2-D weights are projected), every other parameter gets a plain group.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.notes import LOW_RANK
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

_STATE_NOTE = "8 for plain groups; rank x (rows + cols) for projected weights"

#: GaLore's optimizers; apollo-torch ships copies of them too.
SPECS = {
    "GaLoreAdamW": facts("GaLore AdamW: Adam moments of SVD-projected low-rank gradients (Zhao et al., 2024)",
                         None, _STATE_NOTE, notes=LOW_RANK, low_rank="galore"),
    # Seen with galore-torch 1.0: its step calls torch.cuda.synchronize().
    "GaLoreAdamW8bit": facts("GaLore on bitsandbytes' 8-bit AdamW", None, "~2 for plain groups; low-rank for projected",
                             ("cuda",), (Need.CUDA,), notes="its step calls torch.cuda.synchronize(); " + LOW_RANK,
                             low_rank="galore"),
    "GaLoreAdafactor": facts("GaLore on transformers-style Adafactor", None, "sub-linear",
                             notes="with lr set, also set relative_step=False; " + LOW_RANK, low_rank="galore"),
}

SOURCE = Source(
    rank=90, package="galore-torch",
    default=facts(notes=LOW_RANK, low_rank="galore"),
    specs=SPECS,
)
