"""D-Adaptation: learning-rate-free optimizers that estimate the step size.

Configs normally pass ``lr=1.0``: the lr is a multiplier on the estimate.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.notes import LR_IS_A_MULTIPLIER
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

SOURCE = Source(
    rank=30, package="dadaptation", title="D-Adaptation", prefix="dadapt_",
    default=facts(notes=LR_IS_A_MULTIPLIER),
    specs={
        "DAdaptAdam": facts("Adam with D-Adaptation step-size estimation", 12, "+ a few scalars",
                            notes=LR_IS_A_MULTIPLIER),
        "DAdaptAdaGrad": facts("AdaGrad with D-Adaptation step-size estimation", 12, notes=LR_IS_A_MULTIPLIER),
        "DAdaptSGD": facts("SGD with D-Adaptation step-size estimation", 12, notes=LR_IS_A_MULTIPLIER),
        "DAdaptAdan": facts("Adan with D-Adaptation step-size estimation", 20, notes=LR_IS_A_MULTIPLIER),
        "DAdaptLion": facts("Lion with D-Adaptation step-size estimation", 8, notes=LR_IS_A_MULTIPLIER),
    },
)
