"""Puts schedule-free optimizers in ``eval()`` mode to validate and save, ``train()`` mode to train.

Schedule-free optimizers (``schedulefree``, pytorch-optimizer's ScheduleFree*)
train at one point (y) and are meant to be evaluated and saved at another, the
running average (x); ``optimizer.eval()`` / ``.train()`` swap the model's
weights between the two in place. Without the swap, validation scores and
saved weights are those of the noisy training point, and a checkpoint saved in
train mode but resumed as if it were in eval mode drifts
(facebookresearch/schedule_free#48, huggingface/accelerate#4159).

Why by hand: mmengine calls ``before_save_checkpoint`` only after it has
copied the weights into the checkpoint, and has no "after save" hook, so the
switch wraps ``runner.save_checkpoint`` itself (the Runner's and the
FlexibleRunner's). For any other optimizer the hook does nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from visdet.engine.hooks.save_wrap import wrap_save_checkpoint
from visdet.registry import HOOKS

_WRAPPED = "_visdet_schedule_free_save"


def is_schedule_free(optimizer: Any) -> bool:
    """Whether ``optimizer`` switches modes with ``train()`` / ``eval()`` (schedule-free)."""
    return (
        isinstance(optimizer, torch.optim.Optimizer)
        and callable(getattr(optimizer, "train", None))
        and callable(getattr(optimizer, "eval", None))
    )


def _optimizers(obj: Any) -> Iterator[torch.optim.Optimizer]:
    """Every optimizer inside an optim wrapper, a wrapper dict or visdet's HybridOptimizer.

    A config dict (the Runner's ``optim_wrapper`` before it is built) holds none.
    """
    if isinstance(obj, dict):
        return
    if isinstance(getattr(obj, "optim_wrappers", None), dict):  # mmengine's OptimWrapperDict
        for wrapper in obj.optim_wrappers.values():
            yield from _optimizers(wrapper)
        return
    optimizer = getattr(obj, "optimizer", None)  # an optim wrapper
    if optimizer is not None and not isinstance(obj, torch.optim.Optimizer):
        yield from _optimizers(optimizer)
        return
    if isinstance(getattr(obj, "optimizers", None), dict):  # HybridOptimizer (Muon + fallback)
        for inner in obj.optimizers.values():
            yield from _optimizers(inner)
    if isinstance(obj, torch.optim.Optimizer):
        yield obj


def schedule_free_optimizers(runner: Any) -> list[torch.optim.Optimizer]:
    """The runner's built schedule-free optimizers (none before the optimizer is built)."""
    return [o for o in _optimizers(getattr(runner, "optim_wrapper", None)) if is_schedule_free(o)]


@HOOKS.register_module()
class ScheduleFreeHook(Hook):
    """``optimizer.eval()`` before validation, testing and every checkpoint save; ``train()`` after and to train.

    Checkpoints thus hold the averaged (evaluation) weights and the optimizer
    state that matches them; on resume ``before_train`` switches back to the
    training point. A no-op for optimizers without ``train``/``eval`` methods,
    so the default runtime config includes it.
    """

    priority = "VERY_HIGH"  # switch before other hooks look at the weights (EMA, checkpoint, val)

    def before_run(self, runner) -> None:
        def save_in_eval_mode(save: Any, args: tuple, kwargs: dict) -> Any:
            training = self._set_mode(runner, "eval")
            try:
                return save(*args, **kwargs)
            finally:
                if training:
                    self._set_mode(runner, "train")

        wrap_save_checkpoint(runner, _WRAPPED, save_in_eval_mode)

    def before_train(self, runner) -> None:
        # After a resume too: the checkpoint was saved in eval mode.
        self._set_mode(runner, "train", log=True)

    def before_val(self, runner) -> None:
        self._set_mode(runner, "eval")

    def after_val(self, runner) -> None:
        if self._training(runner):
            self._set_mode(runner, "train")

    def before_test(self, runner) -> None:
        self._set_mode(runner, "eval")

    def after_test(self, runner) -> None:
        if self._training(runner):
            self._set_mode(runner, "train")

    def after_train(self, runner) -> None:
        self._set_mode(runner, "eval")  # the final weights are the averaged ones

    @staticmethod
    def _training(runner) -> bool:
        loop = getattr(runner, "_train_loop", None)
        return loop is not None and not isinstance(loop, dict) and loop.iter < loop.max_iters

    @staticmethod
    def _set_mode(runner, mode: str, log: bool = False) -> bool | None:
        """Switch every schedule-free optimizer; return whether any was in train mode (None: there are none)."""
        optimizers = schedule_free_optimizers(runner)
        if not optimizers:
            return None
        was_training = any(_in_train_mode(o) for o in optimizers)
        for optimizer in optimizers:
            getattr(optimizer, mode)()
        if log:
            names = ", ".join(type(o).__name__ for o in optimizers)
            print_log(f"ScheduleFreeHook: {names} in {mode} mode; eval mode for validation and checkpoints",
                      logger="current")
        return was_training


def _in_train_mode(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-free optimizers keep their mode in each param group's ``train_mode``."""
    return any(group.get("train_mode", True) for group in optimizer.param_groups)
