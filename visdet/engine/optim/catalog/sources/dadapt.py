"""D-Adaptation: learning-rate-free optimizers that estimate the step size.

Configs normally pass ``lr=1.0``: the lr is a multiplier on the estimate.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "dadaptation"
_NOTE = "set lr=1.0: lr scales the estimated step size"
CATALOGUE: dict[str, Meta] = {
    "DAdaptAdam": Meta("Adam with D-Adaptation step-size estimation", 12, "+ a few scalars", notes=_NOTE),
    "DAdaptAdaGrad": Meta("AdaGrad with D-Adaptation step-size estimation", 12, notes=_NOTE),
    "DAdaptSGD": Meta("SGD with D-Adaptation step-size estimation", 12, notes=_NOTE),
    "DAdaptAdan": Meta("Adan with D-Adaptation step-size estimation", 20, notes=_NOTE),
    "DAdaptLion": Meta("Lion with D-Adaptation step-size estimation", 8, notes=_NOTE),
}


class DAdaptationSource(Source):
    """Optimizers exported by the ``dadaptation`` package."""

    def __init__(self) -> None:
        super().__init__(
            package="dadaptation",
            top_level="dadaptation",
            title="D-Adaptation",
            install_hint="pip install dadaptation",
            prefix="dadapt_",
            export_modules=(MODULE,),
            known=tuple(Found(n, MODULE) for n in CATALOGUE),
        )

    def meta(self, class_name: str) -> Meta:
        return CATALOGUE.get(class_name, Meta(notes=_NOTE))
