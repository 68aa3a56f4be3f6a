"""mmengine's ``EMAHook``, with its config checked and the weights it evaluates named in the log.

mmengine's hook (registered here under its own name, so every config's
``type='EMAHook'`` in visdet's scope gets this subclass) keeps an averaged copy
(``ema_type``: mmengine's ``ExponentialMovingAverage``, ``MomentumAnnealingEMA``,
``StochasticWeightAverage`` or MMDetection's ``ExpMomentumEMA``), swaps it into the
model for validation and testing, and saves it: a checkpoint's ``state_dict``
holds the EMA weights (what a deployment loads), ``ema_state_dict`` the raw
training weights under ``module.`` and the average's update count (``steps``);
``--resume`` swaps them back, so training goes on from the raw weights.

What this subclass adds, and why mmengine's does not do it:

- Its keywords are checked with ConfigErrors (``ema_checks.py``), where mmengine
  asserts or passes a misspelt keyword to the averaged model as a ``TypeError``.
- ``test_weights='raw'`` (``tools/test.py --raw-weights``) evaluates the raw
  training weights of a checkpoint; mmengine can only test the EMA ones.
- The log says which weights a validation or test scores (mmengine says nothing,
  so an EMA checkpoint tested without the hook looks like any other).
"""
from __future__ import annotations

from typing import Any

from mmengine.hooks import EMAHook as MMEngineEMAHook
from mmengine.logging import print_log

from visdet.engine.hooks.ema_checks import check_ema_hook_args, local_ema_type
from visdet.errors import ConfigError
from visdet.registry import HOOKS


@HOOKS.register_module(name="EMAHook", force=True)  # force: survives re-import
class EMAHook(MMEngineEMAHook):
    """mmengine's EMAHook; ``test_weights`` chooses the EMA (default) or raw weights for ``tools/test.py``.

    Args:
        ema_type: An averaged model in visdet's MODELS scope (``mmdet.`` prefixes are accepted).
        strict_load: Load the average's state strictly on resume.
        begin_iter: The first iteration that updates the average (before it: a copy of the weights).
        begin_epoch: The same, in epochs (not with ``begin_iter``).
        test_weights: ``'ema'`` or ``'raw'``: which weights a test of a checkpoint scores.
        **kwargs: The averaged model's arguments (``momentum``, ``gamma``, ``interval``, ``update_buffers``...).
    """

    def __init__(self, ema_type: Any = "ExponentialMovingAverage", strict_load: bool = False, begin_iter: int = 0,
                 begin_epoch: int = 0, test_weights: str = "ema", **kwargs: Any) -> None:
        check_ema_hook_args(dict(ema_type=ema_type, strict_load=strict_load, begin_iter=begin_iter,
                                 begin_epoch=begin_epoch, test_weights=test_weights, **kwargs))
        if isinstance(ema_type, str):
            ema_type = local_ema_type(ema_type)
        super().__init__(ema_type=ema_type, strict_load=strict_load, begin_iter=begin_iter,
                         begin_epoch=begin_epoch, **kwargs)
        self.test_weights = test_weights
        self._loaded = "state_dict"  # what a test scores: see after_load_checkpoint
        self._validated = False

    def _name(self) -> str:
        ema_type = self.ema_cfg["type"]
        return ema_type if isinstance(ema_type, str) else ema_type.__name__

    def before_train(self, runner) -> None:
        """A begin beyond the end of training is a ConfigError (mmengine asserts)."""
        if self.enabled_by_epoch and self.begin_epoch > runner.max_epochs:
            raise ConfigError(f"is {self.begin_epoch}, after the last epoch ({runner.max_epochs}): the average "
                              f"would never be updated", "EMAHook.begin_epoch")
        if not self.enabled_by_epoch and self.begin_iter > runner.max_iters:
            raise ConfigError(f"is {self.begin_iter}, after the last iteration ({runner.max_iters}): the average "
                              f"would never be updated", "EMAHook.begin_iter")
        print_log(f"EMAHook: {self._name()} of the weights (updates so far: {int(self.ema_model.steps)}); "
                  f"validation and each checkpoint's state_dict use the EMA weights, training the raw ones",
                  logger="current")

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """mmengine's load; with ``test_weights='raw'`` the raw weights go into the model instead of the EMA ones."""
        has_ema = "ema_state_dict" in checkpoint
        if has_ema and not runner._resume and self.test_weights == "raw":
            self._swap_ema_state_dict(checkpoint)  # state_dict <- the raw weights (saved in ema_state_dict)
        self._loaded = ("raw" if self.test_weights == "raw" else "ema") if has_ema else "state_dict"
        super().after_load_checkpoint(runner, checkpoint)

    def before_val_epoch(self, runner) -> None:
        super().before_val_epoch(runner)
        if not self._validated:
            self._validated = True
            print_log(f"EMAHook: validating the EMA weights ({self._name()}, {int(self.ema_model.steps)} updates); "
                      f"training continues on the raw weights", logger="current")

    def before_test_epoch(self, runner) -> None:
        super().before_test_epoch(runner)
        message = {
            "ema": f"testing the EMA weights ({self._name()}; the checkpoint's state_dict); "
                   f"tools/test.py --raw-weights tests the raw training weights",
            "raw": "testing the raw training weights (the checkpoint's ema_state_dict), not the EMA ones",
            "state_dict": "the checkpoint has no ema_state_dict (saved without an EMAHook): testing its "
                          "state_dict weights",
        }[self._loaded]
        print_log(f"EMAHook: {message}", logger="current")
