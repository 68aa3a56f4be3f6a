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

Modules, lowest first: :mod:`.names` (the shared names and
:class:`StrategyConfigError`) and :mod:`.process_group`; :mod:`.lookup`
(strategy classes and optimizer records by name); :mod:`.checks`; the strategies
(:mod:`.deepspeed` with :mod:`.ds_checkpoint` and :mod:`.ds_optim_wrapper`,
:mod:`.fsdp`) and :mod:`.runner`; :mod:`.registered`, which imports them all.
"""
from __future__ import annotations

from visdet.engine.strategies.checks import check_strategy_config, uses_flexible_runner
from visdet.engine.strategies.lookup import register
from visdet.engine.strategies.names import StrategyConfigError

__all__ = ["StrategyConfigError", "check_strategy_config", "register", "uses_flexible_runner"]
