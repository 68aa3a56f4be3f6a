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

Adding a package: write its module here (one ``SOURCE = Source(...)``), put it
in ``SOURCES`` at its rank, and add its setup.py extra (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import replace

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.sources import (
    apollo,
    bnb,
    dadapt,
    deepspeed_ops,
    galore,
    lion_pytorch,
    optimi,
    prodigy,
    pytorch_optimizer,
    schedulefree,
    torch_optim,
    transformers_optim,
)

#: Every source, in naming priority order.
SOURCES: tuple[Source, ...] = tuple(
    module.SOURCE
    for module in (
        torch_optim, bnb, deepspeed_ops, dadapt, transformers_optim, lion_pytorch,
        prodigy, schedulefree, optimi, galore, apollo, pytorch_optimizer,
    )
)


def default_sources() -> list[Source]:
    """Fresh copies of the sources (their install state is read anew), in naming priority order."""
    return [replace(source) for source in SOURCES]


__all__ = ["SOURCES", "Source", "default_sources"]
