"""Build only the config, as the config-check tests do: no model is needed for the checks to fire."""
from __future__ import annotations

import pytest

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError

#: An optimizer config every check accepts.
ADAMW = dict(type="AdamW", lr=1e-4, weight_decay=0.05)


def build(optimizer: dict, paramwise_cfg: dict | None = None, **wrapper) -> OptimWrapperConstructor:
    """The constructor for ``optim_wrapper=dict(optimizer=optimizer, **wrapper)``; it checks in ``__init__``."""
    return OptimWrapperConstructor(dict(optimizer=optimizer, **wrapper), paramwise_cfg)


def expect(match: str, optimizer: dict, paramwise_cfg: dict | None = None, **wrapper) -> OptimizerConfigError:
    """The OptimizerConfigError that building the config raises, checked against ``match``."""
    with pytest.raises(OptimizerConfigError, match=match) as info:
        build(optimizer, paramwise_cfg, **wrapper)
    return info.value
