"""galore-torch: GaLore, AdamW/Adafactor on gradients projected to a low rank.

The projection applies to the parameter groups that carry ``rank``; visdet's
constructor builds that group from ``optim_wrapper.low_rank`` (the modules
whose 2-D weights are projected), every other parameter gets a plain group.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta, Need
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "galore_torch"
_STATE_NOTE = "8 for plain groups; rank x (rows + cols) for projected weights"
LOW_RANK = "projects the weights chosen by optim_wrapper.low_rank (see docs/optimizers.md); the rest is plain"
_ADAFACTOR = "with lr set, also set relative_step=False; " + LOW_RANK

CATALOGUE: dict[str, Meta] = {
    "GaLoreAdamW": Meta("GaLore AdamW: Adam moments of SVD-projected low-rank gradients (Zhao et al., 2024)",
                        None, _STATE_NOTE, notes=LOW_RANK),
    # Seen with galore-torch 1.0: its step calls torch.cuda.synchronize().
    "GaLoreAdamW8bit": Meta("GaLore on bitsandbytes' 8-bit AdamW", None, "~2 for plain groups; low-rank for projected",
                            ("cuda",), (Need.CUDA,), notes="its step calls torch.cuda.synchronize(); " + LOW_RANK),
    "GaLoreAdafactor": Meta("GaLore on transformers-style Adafactor", None, "sub-linear", notes=_ADAFACTOR),
}


class GaLoreSource(Source):
    """Optimizers exported by ``galore_torch``."""

    def __init__(self) -> None:
        super().__init__(
            package="galore-torch",
            top_level="galore_torch",
            title="galore-torch",
            install_hint="pip install galore-torch",
            prefix="galore_torch_",
            export_modules=(MODULE,),
            known=tuple(Found(n, MODULE) for n in CATALOGUE),
        )

    def meta(self, class_name: str) -> Meta:
        return CATALOGUE.get(class_name, Meta(notes=LOW_RANK))
