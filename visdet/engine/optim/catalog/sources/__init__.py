"""The optimizer sources visdet fills its registry from, in priority order.

The order decides names: a class name already taken by an earlier source is
registered with the later source's prefix (``bnb_Adam``, ``lion_pytorch_Lion``,
``optimi_AdamW``, ``pytorch_optimizer_Lamb``...). The order is fixed here,
never by import order or by what happens to be installed: every source lists
its known names even when its package is absent, so installing or removing a
package renames nothing elsewhere.

    torch > bitsandbytes > DeepSpeed > D-Adaptation > transformers >
    lion-pytorch > prodigyopt > schedulefree > torch-optimi > galore-torch >
    apollo-torch > pytorch-optimizer
"""
from __future__ import annotations

from visdet.engine.optim.catalog.sources.apollo import ApolloSource
from visdet.engine.optim.catalog.source import Found, Source
from visdet.engine.optim.catalog.sources.bnb import BitsAndBytesSource
from visdet.engine.optim.catalog.sources.dadapt import DAdaptationSource
from visdet.engine.optim.catalog.sources.deepspeed_ops import DeepSpeedSource
from visdet.engine.optim.catalog.sources.galore import GaLoreSource
from visdet.engine.optim.catalog.sources.lion_pytorch import LionPytorchSource
from visdet.engine.optim.catalog.sources.optimi import OptimiSource
from visdet.engine.optim.catalog.sources.prodigy import ProdigySource
from visdet.engine.optim.catalog.sources.pytorch_optimizer import PytorchOptimizerSource
from visdet.engine.optim.catalog.sources.schedulefree import ScheduleFreeSource
from visdet.engine.optim.catalog.sources.torch_optim import TorchSource
from visdet.engine.optim.catalog.sources.transformers_optim import TransformersSource


def default_sources() -> list[Source]:
    """Fresh source objects in naming priority order."""
    return [
        TorchSource(),
        BitsAndBytesSource(),
        DeepSpeedSource(),
        DAdaptationSource(),
        TransformersSource(),
        LionPytorchSource(),
        ProdigySource(),
        ScheduleFreeSource(),
        OptimiSource(),
        GaLoreSource(),
        ApolloSource(),
        PytorchOptimizerSource(),
    ]


__all__ = ["Found", "Source", "default_sources"]
