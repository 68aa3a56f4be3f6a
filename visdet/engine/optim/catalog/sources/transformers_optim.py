"""transformers: its Adafactor, under the plain name ``Adafactor``.

Only Adafactor is taken: it is what HF Trainer and MMEngine configs mean by
``Adafactor`` (torch's own is registered as ``TorchAdafactor``). The module's
other optimizer class, ``LayerWiseDummyOptimizer``, is a Trainer placeholder
that never updates anything.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

ADAFACTOR = facts(
    "Adafactor (Shazeer & Stern, 2018): factored second moments, relative step sizes",
    None,
    "sub-linear (row+column factors; 4 more with beta1)",
    notes=(
        "with lr set, also set relative_step=False (and usually scale_parameter=False, warmup_init=False); "
        "lr=None uses its own relative step size"
    ),
)

SOURCE = Source(
    rank=40, package="transformers", export_modules=("transformers.optimization",),
    only=frozenset({"Adafactor"}),
    specs={"Adafactor": ADAFACTOR},
)
