"""mmengine's ``DeepSpeedOptimWrapper`` with visdet's non-finite step guard and the gradient norm in the log.

mmengine's wrapper hands backward and step to the DeepSpeed engine and watches
nothing. In float32, DeepSpeed 0.19 steps whatever gradients it gets: one NaN
loss turns every weight into NaN and the run goes on, saving NaN checkpoints
(checked: ZeRO 0-3, with and without clipping). Its ZeRO 1/2 optimizer has a
check that skips a step whose gradients hold inf/NaN (``check_grad_overflow``)
but turns it on only for fp16/bf16. This wrapper:

* turns DeepSpeed's own check on for float32 ZeRO 1/2 (with bf16 the config's
  ``bf16.check_grad_overflow`` decides; with fp16 the dynamic loss scaler skips
  overflowing steps itself, as ``AmpOptimWrapper`` leaves them to GradScaler);
* counts the steps the engine skipped, logs each (``nonfinite_skips``) and
  stops with :class:`NonFiniteTrainingError` after ``max_nonfinite_steps`` in a
  row, like visdet's ``OptimWrapper``; the counters travel in the checkpoint;
* where DeepSpeed cannot skip a step (ZeRO stage 0 and ZeRO-3 outside fp16),
  stops at the first non-finite loss, before its backward reaches the weights;
* logs the engine's global gradient norm as ``grad_norm`` after a step it applied.

Registered in visdet's ``OPTIM_WRAPPERS`` under mmengine's name, so configs keep
``type='DeepSpeedOptimWrapper'``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper as MMEngineDeepSpeedOptimWrapper
from mmengine.logging import MessageHub

from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY as KEY
from visdet.engine.optim.wrappers.nonfinite import GRADS, NonFiniteSkipCounter, NonFiniteTrainingError
from visdet.engine.strategies.names import DEEPSPEED_WRAPPER
from visdet.registry import OPTIM_WRAPPERS


def enable_step_skipping(engine: Any) -> bool:
    """Let ``engine`` skip steps with inf/NaN gradients where DeepSpeed can; whether it now does.

    True for fp16 (the loss scaler skips) and for ZeRO 1/2, whose optimizer
    has the check; False for ZeRO stage 0 and ZeRO-3 in float32/bf16.
    """
    if engine.fp16_enabled():
        return True
    zero_optimizer = engine.optimizer
    if not hasattr(zero_optimizer, "check_grad_overflow"):
        return False
    if not engine.bfloat16_enabled():  # float32: DeepSpeed leaves the check off; bf16 follows the user's config
        zero_optimizer.check_grad_overflow = True
    return bool(zero_optimizer.check_grad_overflow)


@OPTIM_WRAPPERS.register_module(name=DEEPSPEED_WRAPPER, force=True)  # force: survives re-import
class DeepSpeedOptimWrapper(NonFiniteSkipCounter, MMEngineDeepSpeedOptimWrapper):
    """DeepSpeed's engine does backward, clipping and step; visdet counts its skipped steps and logs the norm.

    Args:
        optimizer: The optimizer handed to ``deepspeed.initialize``.
        max_nonfinite_steps: Stop training with :class:`NonFiniteTrainingError`
            when this many steps in a row had inf/NaN gradients. An integer >= 1.
    """

    clip_advice = "gradient clipping (strategy.gradient_clipping=35.0)"

    def __init__(self, optimizer: Any, max_nonfinite_steps: int = 10) -> None:
        self._init_counters(max_nonfinite_steps)
        super().__init__(optimizer)
        self.engine_skips: bool | None = None  # set by the strategy once the engine exists

    def update_params(self, loss: torch.Tensor) -> None:  # type: ignore[override]
        if self.engine_skips is False and self._guards() and not bool(torch.isfinite(loss.detach()).all()):
            # Nothing downstream can skip this step: stop before its backward reaches the weights.
            raise NonFiniteTrainingError(
                f"Non-finite loss at {self._where()}. DeepSpeed cannot skip a step with ZeRO stage "
                f"{self.model.zero_optimization_stage()} outside fp16, so training stopped before this one reached "
                "the weights; the last checkpoint saved holds finite ones. Things to try: ZeRO stage 1 or 2 "
                f"(visdet skips such steps there, up to {KEY}.max_nonfinite_steps in a row), a lower learning rate "
                f"({KEY}.optimizer.lr) or a longer warmup, {self.clip_advice}, checking the data for NaN/inf values "
                "and degenerate boxes.", consecutive=1, total=self.nonfinite_skips + 1)
        super().update_params(loss)

    def step(self, **kwargs: Any) -> None:
        engine = self.model
        skipped_before = engine.skipped_steps
        super().step(**kwargs)
        if engine.skipped_steps > skipped_before:
            hub = MessageHub.get_current_instance()
            if "train/grad_norm" in hub.log_scalars:  # not the last applied step's norm: this one overflowed
                hub.update_scalar("train/grad_norm", float("nan"))
            if self._guards():
                self._skip(GRADS)
            return
        if engine.was_step_applied():
            self._applied()
            norm = engine.get_global_grad_norm()  # None under ZeRO stage 0 without clipping
            norm = None if norm is None else float(norm)
            if norm is not None and math.isfinite(norm):
                MessageHub.get_current_instance().update_scalar("train/grad_norm", norm)

    def _clip_advice(self) -> str | None:
        """No clipping advice when the strategy already clips."""
        clipping = getattr(self.model, "gradient_clipping", None)
        return None if callable(clipping) and clipping() else self.clip_advice

    def _guards(self) -> bool:
        """fp16's dynamic loss scaling skips overflowing steps as a matter of course: those are not counted."""
        return not self.model.fp16_enabled()
