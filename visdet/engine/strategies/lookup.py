"""visdet's strategy classes by name, registered on first use with DeepSpeed's import chatter logged.

The checks (:mod:`.checks`) read a strategy class's arguments; they get the
class from visdet's ``STRATEGIES`` registry rather than by importing
:mod:`.deepspeed` or :mod:`.fsdp`, which import the checks' names.
"""
from __future__ import annotations

from visdet.registry import STRATEGIES
from visdet.utils.quiet_import import quiet_import

#: The module that registers visdet's strategies: the location of the ``STRATEGIES`` registry.
REGISTERED = "visdet.engine.strategies.registered"


def register() -> None:
    """Register visdet's strategies (and mmengine's DeepSpeedOptimWrapper), with DeepSpeed's import chatter logged."""
    quiet_import(REGISTERED)


def strategy_class(name: str) -> type:
    """visdet's strategy class registered as ``name`` (``'DeepSpeedStrategy'``, ``'FSDPStrategy'``)."""
    register()
    return STRATEGIES.get(name)
