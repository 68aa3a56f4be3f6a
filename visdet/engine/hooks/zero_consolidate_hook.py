"""Gathers ZeroRedundancyOptimizer shards on every rank before a checkpoint save, under any mmengine Runner.

mmengine's ``Runner.save_checkpoint`` runs on rank 0 alone (``@master_only``)
and calls ``optim_wrapper.state_dict()`` there; a ZeroRedundancyOptimizer's
state is sharded across ranks and gathering it is a collective, so rank 0
waits forever for ranks that never join (mmengine's own ZeRO class too).
visdet's Runner gathers in its ``save_checkpoint``; mmengine's plain Runner (a
user's script, MMDetection's ``tools/train.py``) needs this hook.

Why it wraps ``runner.save_checkpoint`` rather than mirroring CheckpointHook's
"save now?" predicates: every caller of it (CheckpointHook's interval, last and
best saves, a user's own hook) calls it on every rank and only mmengine's
``@master_only`` inside drops the other ranks, so a gather just before that
call is exactly "every rank, only when a save happens", with nothing to keep
in step with CheckpointHook's options. mmengine has no hook that runs on every
rank before its save. A save with ``save_optimizer=False`` (the best
checkpoint) gathers nothing; loading (``resume``) needs nothing: every rank
reads the full state and keeps its own shard. A no-op without ZeRO.
"""
from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook

from visdet.engine.hooks.save_wrap import wrap_save_checkpoint
from visdet.registry import HOOKS

_WRAPPED = "_visdet_zero_gather_save"


@HOOKS.register_module()
class ZeroConsolidateHook(Hook):
    """Before each ``runner.save_checkpoint`` with the optimizer, every rank gathers ZeRO shards onto rank 0.

    visdet's ZeroRedundancyOptimizer then returns that gather from rank 0's
    ``state_dict()`` instead of starting a collective alone, and visdet's
    Runner does not gather a second time.
    """

    priority = "VERY_LOW"  # as CheckpointHook; the wrap is in place before any hook saves

    def before_run(self, runner) -> None:
        def save_gathered(save: Any, args: tuple, kwargs: dict) -> Any:
            if kwargs.get("save_optimizer", args[3] if len(args) > 3 else True):  # mmengine's 4th argument
                gather(runner)
            return save(*args, **kwargs)

        wrap_save_checkpoint(runner, _WRAPPED, save_gathered)


def gather(runner: Any) -> int:
    """Gather the runner's ZeRO shards onto rank 0 (a collective); how many optimizers were gathered."""
    optim_wrapper = getattr(runner, "optim_wrapper", None)
    if optim_wrapper is None or isinstance(optim_wrapper, dict):  # a config: not built yet
        return 0
    from visdet.engine.optim.config.zero_redundancy import gather_zero_shards  # optim imports the hooks' registry

    return gather_zero_shards(optim_wrapper)
