"""Register visdet's FlexibleRunner strategies: the location of visdet's ``STRATEGIES`` registry.

Importing it imports mmengine's strategy package, which imports DeepSpeed when
it is installed; it is imported only when a strategy is looked up or a config
names one (never by ``import visdet``).
"""
from __future__ import annotations

from visdet.engine.strategies import deepspeed, ds_optim_wrapper, fsdp, runner  # noqa: F401  (registration)
