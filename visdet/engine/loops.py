"""mmengine's train and validation loops, made to resume exactly.

mmengine 0.10 resumes an ``EpochBasedTrainLoop`` from a mid-epoch checkpoint
by replaying the whole epoch, restores no RNG state, and lets validation draw
from the training RNG stream (creating a data-loader iterator draws a seed).
So a run killed and resumed does not continue the run it replaces. These
subclasses, registered under mmengine's names in visdet's ``LOOPS``:

* skip, in a resumed epoch, the batches already trained on (the sampler's
  order is a function of seed and epoch, so the same ones come again);
* then restore the RNG states saved with the checkpoint
  (:class:`visdet.engine.hooks.RNGStateHook` puts them in, and hands them to
  the loop as ``pending_rng_state`` on load), so the next batch's random
  flips and the samplers' draws are those of the uninterrupted run;
* run validation with the training RNG state saved and put back afterwards.
"""
from __future__ import annotations

import logging
from typing import Any

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as _EpochBasedTrainLoop
from mmengine.runner import IterBasedTrainLoop as _IterBasedTrainLoop
from mmengine.runner import ValLoop as _ValLoop

from visdet.engine import rng_state
from visdet.engine.optim.wrappers.train_step import train_step
from visdet.registry import LOOPS


class _DrivenTrainStep:
    """``run_iter`` as mmengine 0.10's, with the iteration run by :func:`train_step`.

    An optimizer that needs more than ``backward(); step()`` (a closure, each
    loss term, a second-order backward) gets its wrapper's own iteration;
    every other optimizer runs mmengine's ``model.train_step`` as before.
    """

    def _train_step(self, batch_idx: int, data_batch: Any) -> None:
        self.runner.call_hook("before_train_iter", batch_idx=batch_idx, data_batch=data_batch)
        outputs = train_step(self.runner.model, data_batch, self.runner.optim_wrapper)
        self.runner.call_hook("after_train_iter", batch_idx=batch_idx, data_batch=data_batch, outputs=outputs)
        self._iter += 1


class _RestoresRNG:
    """Holds the RNG state of the checkpoint a run resumed from, until the data position is caught up."""

    pending_rng_state: dict[str, Any] | None = None

    def _restore_pending_rng(self) -> None:
        if self.pending_rng_state is not None:
            rng_state.restore(self.pending_rng_state)
            self.pending_rng_state = None


@LOOPS.register_module()
class EpochBasedTrainLoop(_DrivenTrainStep, _RestoresRNG, _EpochBasedTrainLoop):
    """Epoch loop that continues a resumed epoch at the batch where the checkpoint was taken."""

    def run_iter(self, idx: int, data_batch: Any) -> None:
        self._train_step(idx, data_batch)

    def run_epoch(self) -> None:
        skip = self._iter - self._epoch * len(self.dataloader)
        if skip <= 0 and self._iter > 0:  # resumed at an epoch boundary
            self._restore_pending_rng()
        if skip <= 0:
            return super().run_epoch()
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        print_log(f"Resuming epoch {self._epoch + 1} after batch {skip}: skipping the batches already trained on",
                  logger="current", level=logging.INFO)
        batches = iter(self.dataloader)
        for _ in range(skip):
            next(batches)
        self._restore_pending_rng()
        for idx, data_batch in enumerate(batches, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


@LOOPS.register_module()
class IterBasedTrainLoop(_DrivenTrainStep, _RestoresRNG, _IterBasedTrainLoop):
    """Iteration loop that restores the RNG state once the trained batches are skipped.

    ``run`` is mmengine 0.10's, with the restore added between skipping and the
    first new batch (there is no hook point there).
    """

    def run_iter(self, data_batch: Any) -> None:
        self._train_step(self._iter, data_batch)

    def run(self) -> None:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter > 0:
            print_log(f"Advance dataloader {self._iter} steps to skip data that has already been trained",
                      logger="current", level=logging.INFO)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
            self._restore_pending_rng()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


@LOOPS.register_module()
class ValLoop(_ValLoop):
    """Validation that leaves the training RNG streams exactly as it found them.

    While it runs, ``training_rng_state`` holds the training streams' state: a
    checkpoint saved from inside validation (CheckpointHook's ``save_best``
    saves the best checkpoint and then the epoch checkpoint again, from
    ``after_val_epoch``) must record that state, not the one validation has
    drawn from, or a run resumed from it continues differently
    (:class:`visdet.engine.hooks.RNGStateHook` reads it).
    """

    training_rng_state: dict[str, Any] | None = None

    def run(self) -> dict:
        self.training_rng_state = rng_state.capture()
        try:
            return super().run()
        finally:
            rng_state.restore(self.training_rng_state)
            self.training_rng_state = None
