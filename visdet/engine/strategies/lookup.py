"""What a config's names stand for: visdet's strategy classes, and the catalogue record of its optimizer.

The checks (:mod:`.checks`) read a strategy class's arguments; they get the
class from visdet's ``STRATEGIES`` registry (registered on first use, with
DeepSpeed's import chatter logged) rather than by importing :mod:`.deepspeed`
or :mod:`.fsdp`, which import the checks' names. What a strategy must do for
an optimizer (DeepSpeed's engine builds it, ZeRO-Offload steps it, FSDP cannot
shard it) is read from the optimizer's record (``OptimizerSpec``), not from
lists of names.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.catalogue import get_catalog
from visdet.engine.optim.catalog.spec import OptimizerSpec
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


def optimizer_spec(name: str | None) -> OptimizerSpec | None:
    """The catalogue record of an optimizer ``type``: a registry name, an alias, or scoped (``'visdet.Muon'``)."""
    if not name:
        return None
    catalog = get_catalog()
    entry = catalog.lookup(name) or catalog.lookup(name.rsplit(".", 1)[-1])
    return entry.spec if entry is not None else None
