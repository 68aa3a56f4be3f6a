"""prodigyopt: Prodigy, a learning-rate-free Adam (D-Adaptation's successor)."""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "prodigyopt"
PRODIGY = Meta(
    "Prodigy: Adam with distance-adaptive step size estimation (Mishchenko & Defazio, 2023)",
    16,
    "+ a few scalars",
    notes="set lr=1.0: lr scales the estimated step size",
)


class ProdigySource(Source):
    """Optimizers exported by ``prodigyopt``."""

    def __init__(self) -> None:
        super().__init__(
            package="prodigyopt",
            top_level="prodigyopt",
            title="prodigyopt",
            install_hint="pip install prodigyopt",
            prefix="prodigyopt_",
            export_modules=(MODULE,),
            known=(Found("Prodigy", MODULE),),
        )

    def meta(self, class_name: str) -> Meta:
        return PRODIGY if class_name == "Prodigy" else Meta(notes=PRODIGY.notes)
