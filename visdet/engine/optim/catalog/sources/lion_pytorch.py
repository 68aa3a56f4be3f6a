"""lion-pytorch: lucidrains' Lion, registered as ``lion_pytorch_Lion``.

``Lion`` already names bitsandbytes' Lion (a higher-ranked source), so this
one takes the ``lion_pytorch_`` prefix.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

SOURCE = Source(
    rank=50, package="lion-pytorch",
    specs={
        "Lion": facts(
            "Lion: sign of interpolated momentum (Chen et al., 2023), lucidrains' implementation", 4,
            notes="lr ~3-10x below AdamW's and weight decay ~3-10x above; use_triton=True needs CUDA",
        ),
    },
)
