"""transformers: its Adafactor, under the plain name ``Adafactor``.

Only Adafactor is taken: it is what HF Trainer and MMEngine configs mean by
``Adafactor`` (torch's own is registered as ``TorchAdafactor``). The module's
other optimizer class, ``LayerWiseDummyOptimizer``, is a Trainer placeholder
that never updates anything.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "transformers.optimization"
ADAFACTOR = Meta(
    "Adafactor (Shazeer & Stern, 2018): factored second moments, relative step sizes",
    None,
    "sub-linear (row+column factors; 4 more with beta1)",
    notes=(
        "with lr set, also set relative_step=False (and usually scale_parameter=False, warmup_init=False); "
        "lr=None uses its own relative step size"
    ),
)


class TransformersSource(Source):
    """``transformers.optimization.Adafactor``."""

    def __init__(self) -> None:
        super().__init__(
            package="transformers",
            top_level="transformers",
            title="transformers",
            install_hint="pip install transformers",
            prefix="transformers_",
            export_modules=(MODULE,),
            known=(Found("Adafactor", MODULE),),
        )

    def keep(self, found: Found) -> bool:
        return found.class_name == "Adafactor"

    def meta(self, class_name: str) -> Meta:
        return ADAFACTOR
