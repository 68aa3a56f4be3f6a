"""mmengine ``FlexibleRunner`` strategies (DeepSpeed, FSDP), fixed for visdet and for CPU machines.

A config selects them MMEngine's way::

    runner_type = 'FlexibleRunner'
    strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2))  # or type='FSDPStrategy'

With ``default_scope='visdet'`` the names resolve to visdet's subclasses in
visdet's ``STRATEGIES`` registry (this package is that registry's location).
Each subclass says what mmengine 0.10.7 gets wrong against DeepSpeed 0.19 /
torch 2.14 and why. :func:`check_strategy_config` refuses impossible strategy
configs at build time, before any training work, with one
:class:`StrategyConfigError`.

Importing this package imports neither DeepSpeed nor FSDP: the strategies
are registered by :mod:`visdet.engine.strategies.registered` (the registry's
location, imported on first lookup, as mmengine's ``FlexibleRunner`` already
imports DeepSpeed by then) or by :func:`register`.
"""
from __future__ import annotations

from .checks import StrategyConfigError, check_strategy_config, uses_flexible_runner

__all__ = ["StrategyConfigError", "check_strategy_config", "register", "uses_flexible_runner"]


def register() -> None:
    """Register visdet's strategies (and mmengine's DeepSpeedOptimWrapper), with DeepSpeed's import chatter logged."""
    from visdet.utils.quiet_import import quiet_import

    quiet_import("visdet.engine.strategies.registered")
