"""The optimizer sources visdet fills its registry from: every module here, in rank order.

The rank decides names: a class name already taken by a lower-ranked source
is registered with the later source's prefix (``bnb_Adam``,
``lion_pytorch_Lion``, ``optimi_AdamW``, ``pytorch_optimizer_Lamb``...). The
order is fixed by the ranks, never by import order or by what happens to be
installed: every source lists its known names even when its package is
absent, so installing or removing a package renames nothing elsewhere.

    torch > bitsandbytes > DeepSpeed > D-Adaptation > transformers >
    lion-pytorch > prodigyopt > schedulefree > torch-optimi > galore-torch >
    apollo-torch > pytorch-optimizer

Adding a package is one module here holding ``SOURCE = Source(...)`` (with a
rank no other source has) plus its setup.py extra; see docs/architecture.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace

from visdet.engine.optim.catalog.source import Source


def _load_sources() -> tuple[Source, ...]:
    """``SOURCE`` of every module in this package, by rank (a tie is a mistake: names would depend on it)."""
    found = [importlib.import_module(f"{__name__}.{info.name}").SOURCE for info in pkgutil.iter_modules(__path__)]
    ranks = [source.rank for source in found]
    if len(set(ranks)) != len(ranks):
        raise RuntimeError(f"two optimizer sources share a rank: {sorted(ranks)}")
    return tuple(sorted(found, key=lambda source: source.rank))


#: Every source, in naming priority order.
SOURCES: tuple[Source, ...] = _load_sources()


def default_sources() -> list[Source]:
    """Fresh copies of the sources (their install state is read anew), in naming priority order."""
    return [replace(source) for source in SOURCES]


__all__ = ["SOURCES", "Source", "default_sources"]
