"""The optimizer sources visdet fills its registry from, in priority order.

The order decides names: a class name already taken by an earlier source is
registered with the later source's prefix (``bnb_Adam``). The order is fixed
here, never by import order or by what happens to be installed.
"""
from __future__ import annotations

from .base import Found, Source
from .bnb import BitsAndBytesSource
from .dadapt import DAdaptationSource
from .deepspeed_ops import DeepSpeedSource
from .torch_optim import TorchSource


def default_sources() -> list[Source]:
    """Fresh source objects in naming priority order."""
    return [TorchSource(), BitsAndBytesSource(), DeepSpeedSource(), DAdaptationSource()]


__all__ = ["Found", "Source", "default_sources"]
