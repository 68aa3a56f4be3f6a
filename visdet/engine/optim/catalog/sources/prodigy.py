"""prodigyopt: Prodigy, a learning-rate-free Adam (D-Adaptation's successor)."""
from __future__ import annotations

from visdet.engine.optim.catalog.notes import LR_IS_A_MULTIPLIER
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

SOURCE = Source(
    rank=60, package="prodigyopt",
    default=facts(notes=LR_IS_A_MULTIPLIER),
    specs={
        "Prodigy": facts(
            "Prodigy: Adam with distance-adaptive step size estimation (Mishchenko & Defazio, 2023)",
            16, "+ a few scalars", notes=LR_IS_A_MULTIPLIER,
        ),
    },
)
