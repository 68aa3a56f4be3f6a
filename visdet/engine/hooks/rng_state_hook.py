"""Saves the RNG states in each checkpoint and hands them to the train loop on resume."""
from __future__ import annotations

from mmengine.hooks import Hook

from visdet.engine import rng_state
from visdet.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """``checkpoint['rng_state']``: torch, CUDA, numpy and Python RNG states (weights_only-safe values).

    On load the state goes to the train loop (visdet's loops restore it once the
    data position is caught up); a checkpoint loaded only for its weights
    (``load_from`` without ``resume``) leaves the RNG alone.
    """

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # A save from inside validation (save_best) records the training streams as validation found
        # them (visdet's ValLoop puts them back afterwards), not as validation has advanced them.
        val_loop = runner.__dict__.get("_val_loop")  # the attribute, not the property: that would build it
        training = getattr(val_loop, "training_rng_state", None)
        checkpoint["rng_state"] = training if training is not None else rng_state.capture()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = getattr(runner, "_train_loop", None)
        if checkpoint.get("rng_state") is not None and hasattr(loop, "pending_rng_state") and runner._resume:
            loop.pending_rng_state = checkpoint["rng_state"]
