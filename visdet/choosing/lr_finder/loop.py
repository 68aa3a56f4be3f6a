"""The range test's train loop: one exponentially rising lr per iteration, then the weights put back.

A subclass of visdet's ``IterBasedTrainLoop`` (registered in visdet's
``LOOPS`` as ``LrRangeTestLoop`` when this module is imported), so each
iteration is the real one: visdet's driven train step (closure, second-order
and model-taking optimizers included), the config's optimizer wrapper
(clipping, AMP, the non-finite guard) and its hooks. It validates nothing,
and the range test's config has no checkpoint hook and no ``param_scheduler``
(:mod:`.range_test` sees to that): the lr is this loop's alone.

Iteration ``i`` of ``N`` trains at ``lr_i = start * (end / start) ** (i / (N - 1))``;
every parameter group's lr is ``lr_i`` times its ratio to the config's lr
when the optimizer was built (``lr_mult``, layer decay and
``auto_scale_lr`` are kept). The loss is smoothed with a debiased moving
average; the sweep stops early once the smoothed loss exceeds ``diverge``
times its minimum or the loss is not finite. Then the model's state dict
and the optimizer wrapper's state (the optimizer's, the loss scaler's, the
guard's counters) are loaded back from the snapshot taken after
``before_train`` (after weight initialisation and ``load_from``), so the
weights are bit-identical to those the sweep started from.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from visdet.choosing.lr_finder.suggestion import DebiasedEma
from visdet.engine.loops import IterBasedTrainLoop
from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError
from visdet.engine.optim.wrappers.train_step import train_step
from visdet.registry import LOOPS

#: Why a sweep ended.
STOP_END, STOP_DIVERGED, STOP_NONFINITE = "reached --end", "diverged", "non-finite loss"


@dataclass
class SweepRecord:
    """What one sweep measured, one entry per iteration run.

    Attributes:
        lrs: The swept lr (what the config's lr would be) at each iteration.
        group_lrs: Each parameter group's lr at each iteration.
        losses: The total loss of each iteration.
        smoothed: Its debiased moving average.
        stop_reason: One of ``STOP_END``, ``STOP_DIVERGED``, ``STOP_NONFINITE``.
        snapshot_seconds, restore_seconds: Time to copy the state before the sweep and to load it back.
    """

    lrs: list[float] = field(default_factory=list)
    group_lrs: list[list[float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stop_reason: str = STOP_END
    snapshot_seconds: float = 0.0
    restore_seconds: float = 0.0


def sweep_lr(index: int, iters: int, start: float, end: float) -> float:
    """The lr of iteration ``index`` of ``iters``: ``start`` at the first, ``end`` at the last, log-spaced."""
    return start * (end / start) ** (index / (iters - 1))


def _total_loss(outputs: Any) -> float:
    """The iteration's total loss from the log variables (mmengine's ``parse_losses`` puts it under 'loss')."""
    value = (outputs or {}).get("loss")
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item()
    return float(value) if value is not None else math.nan


class _Snapshot:
    """A copy of the model's and the optimizer wrapper's state, loaded back in place (parameters keep identity)."""

    def __init__(self, model: torch.nn.Module, wrapper: Any) -> None:
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.wrapper_state = copy.deepcopy(wrapper.state_dict())

    def restore(self, model: torch.nn.Module, wrapper: Any) -> None:
        with torch.no_grad():
            model.load_state_dict(self.model_state, strict=True)
        wrapper.load_state_dict(copy.deepcopy(self.wrapper_state))
        wrapper.zero_grad()


@LOOPS.register_module()
class LrRangeTestLoop(IterBasedTrainLoop):
    """Sweep the lr exponentially from ``start`` to ``end`` over at most ``max_iters`` iterations.

    Args:
        runner, dataloader: As for mmengine's loops.
        max_iters: Iterations of the full sweep (at least 2).
        start, end: First and last lr (``0 < start < end``).
        base_lr: The config's lr; each group keeps its ratio to it.
        smooth: Moving-average factor of the loss (``0 <= smooth < 1``).
        diverge: Stop once the smoothed loss exceeds this times its minimum (``> 1``).
    """

    def __init__(self, runner, dataloader, max_iters: int, start: float, end: float, base_lr: float,
                 smooth: float = 0.98, diverge: float = 4.0) -> None:
        super().__init__(runner, dataloader, max_iters=max_iters, val_interval=max_iters + 1)
        self.start, self.end, self.base_lr = float(start), float(end), float(base_lr)
        self.smooth, self.diverge = float(smooth), float(diverge)
        self.record = SweepRecord()
        self._outputs: Any = None

    def _train_step(self, batch_idx: int, data_batch: Any) -> None:
        """visdet's driven step, keeping the outputs (the parent's discards them after the hooks)."""
        self.runner.call_hook("before_train_iter", batch_idx=batch_idx, data_batch=data_batch)
        self._outputs = train_step(self.runner.model, data_batch, self.runner.optim_wrapper)
        self.runner.call_hook("after_train_iter", batch_idx=batch_idx, data_batch=data_batch,
                              outputs=self._outputs)
        self._iter += 1

    def run(self) -> torch.nn.Module:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        model, wrapper = self.runner.model, self.runner.optim_wrapper
        groups = wrapper.param_groups
        ratios = [float(group["lr"]) / self.base_lr for group in groups]  # a tensor lr (capturable) too
        began = time.perf_counter()
        snapshot = _Snapshot(model, wrapper)
        self.record.snapshot_seconds = time.perf_counter() - began
        try:
            self._sweep(model, groups, ratios)
        finally:
            began = time.perf_counter()
            snapshot.restore(model, wrapper)
            self.record.restore_seconds = time.perf_counter() - began
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return model

    def _sweep(self, model: torch.nn.Module, groups: list[dict], ratios: list[float]) -> None:
        ema, best = DebiasedEma(self.smooth), math.inf
        record = self.record
        while self._iter < self._max_iters and not self.stop_training:
            lr = sweep_lr(self._iter, self._max_iters, self.start, self.end)
            for group, ratio in zip(groups, ratios):
                group["lr"] = lr * ratio
            record.lrs.append(lr)
            record.group_lrs.append([float(group["lr"]) for group in groups])
            model.train()
            try:
                self.run_iter(next(self.dataloader_iterator))
                loss = _total_loss(self._outputs)
            except NonFiniteTrainingError:  # the guard's limit of skipped steps: diverged for this test
                self._iter += 1
                loss = math.nan
            record.losses.append(loss)
            smoothed = ema.update(loss) if math.isfinite(loss) else math.nan
            record.smoothed.append(smoothed)
            if not math.isfinite(smoothed):
                record.stop_reason = STOP_NONFINITE
                return
            best = min(best, smoothed)
            if smoothed > self.diverge * best:
                record.stop_reason = STOP_DIVERGED
                return
