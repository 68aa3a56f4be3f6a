"""mmengine's ``DeepSpeedOptimWrapper`` that logs the gradient norm, as every other visdet run does.

mmengine's wrapper hands backward and step to the DeepSpeed engine and logs
nothing, so a DeepSpeed run's log lacked the ``grad_norm`` column a plain run
has. The engine already computes the global norm in its step (for clipping and
for ZeRO's overflow check); this wrapper reads it back. Registered in visdet's
``OPTIM_WRAPPERS`` under mmengine's name, so configs keep
``type='DeepSpeedOptimWrapper'``.
"""
from __future__ import annotations

from typing import Any

from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper as MMEngineDeepSpeedOptimWrapper
from mmengine.logging import MessageHub

from visdet.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module(name="DeepSpeedOptimWrapper", force=True)  # force: survives re-import
class DeepSpeedOptimWrapper(MMEngineDeepSpeedOptimWrapper):
    """DeepSpeed's engine does backward, clipping and step; ``grad_norm`` goes to the training log."""

    def step(self, **kwargs: Any) -> None:
        super().step(**kwargs)
        norm = self.model.get_global_grad_norm()
        if norm is not None:  # None before the first step, or when the engine computed none
            MessageHub.get_current_instance().update_scalar("train/grad_norm", float(norm))
