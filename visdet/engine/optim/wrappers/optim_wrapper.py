"""visdet's plain ``OptimWrapper``: mmengine's, with a step skipped when the loss or gradients are not finite.

mmengine's ``OptimWrapper`` steps whatever gradients it is given: one NaN loss
or one inf gradient turns every parameter and the optimizer's moment estimates
into NaN, the run goes on logging ``loss: nan`` and the checkpoints it writes
are worthless. visdet's ``OptimWrapper`` (registered under mmengine's name in
visdet's ``OPTIM_WRAPPERS``, so ``type='OptimWrapper'`` with
``default_scope='visdet'`` gets it) skips such a step instead:

* a non-finite loss spoils its accumulation window: at the real step (the
  last micro-batch when ``accumulative_counts > 1``) the gradients are zeroed
  and ``optimizer.step()`` is not called, so parameters and optimizer state
  stay bit-identical (its backward still runs: skipping it would need a host
  sync per micro-batch, and DDP needs every rank to run it);
* finite loss but non-finite gradients (found with one fused check, the
  ``clip_grad`` total norm when norm clipping is on, else the max-abs norm of
  all gradients) are handled the same way; with norm clipping a skipped step
  logs its own (non-finite) ``grad_norm``, not the last good step's value.

Counting, logging and limiting the skips (``max_nonfinite_steps``, the stop
message, the counters in the checkpoint) is
:class:`~visdet.engine.optim.wrappers.nonfinite.NonFiniteSkipCounter`'s job.

With float16 AMP a ``GradScaler`` already skips non-finite steps and lowers the
scale, so :class:`~visdet.engine.optim.wrappers.amp_wrapper.AmpOptimWrapper` turns the
guard off when it uses one.
"""
from __future__ import annotations

from typing import Any

import torch

from visdet.engine.optim.config.closure_checks import check_closure_interval
from visdet.engine.optim.config.wrapper_checks import check_accumulative_counts, check_clip_grad
from visdet.engine.optim.wrappers.agc import adaptive_clip_grad_
from visdet.engine.optim.wrappers.nonfinite import GRADS, LOSS, NonFiniteSkipCounter
from visdet.engine.optim.wrappers.train_step import driver_for
import visdet.engine.optim.wrappers.drivers  # noqa: F401  (registers each kind's driver)

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)

from mmengine.optim import OptimWrapper as MMEngineOptimWrapper

from visdet.registry import OPTIM_WRAPPERS


#: Clip types whose function returns the total gradient norm (logged as ``grad_norm``).
NORM_CLIPS = ("norm", "agc")


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@OPTIM_WRAPPERS.register_module(name="OptimWrapper", force=True)  # force: survives re-import
class OptimWrapper(NonFiniteSkipCounter, MMEngineOptimWrapper):
    """mmengine's ``OptimWrapper`` that skips steps with a non-finite loss or gradients.

    Args:
        optimizer: The optimizer that updates the parameters.
        accumulative_counts: Update the parameters every this many
            :meth:`update_params` calls, accumulating gradients in between.
        clip_grad: Arguments of ``torch.nn.utils.clip_grad_norm_`` (default,
            or ``type='norm'``), ``clip_grad_value_`` (``type='value'``) or
            adaptive unit-wise clipping (``type='agc'``, ``clip_factor``, ``eps``;
            :mod:`~visdet.engine.optim.wrappers.agc`).
        max_nonfinite_steps: Stop training with :class:`NonFiniteTrainingError`
            when this many optimizer steps in a row were skipped for a
            non-finite loss or gradients. An integer >= 1.
        closure_interval: For an optimizer of the SAM family (a closure
            optimizer wrapping a base optimizer), perturb every this many
            steps and step the base optimizer plainly in between
            (:mod:`~visdet.engine.optim.wrappers.drivers.closure`). 1: every step.

    Attributes:
        nonfinite_skips: Steps skipped since the wrapper was built.
        consecutive_nonfinite: Steps skipped since the last good step.

    Raises:
        OptimizerConfigError: for a bad ``accumulative_counts``, ``clip_grad``
            or ``max_nonfinite_steps``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        accumulative_counts: int = 1,
        clip_grad: dict | None = None,
        max_nonfinite_steps: int = 10,
        closure_interval: int = 1,
    ) -> None:
        # Checked here, not only by the constructor (which checks them before it sees the model): an
        # OptimWrapper or AmpOptimWrapper is also built directly, and mmengine would only ``assert``.
        check_accumulative_counts(accumulative_counts)
        check_clip_grad(clip_grad)
        self._init_counters(max_nonfinite_steps)  # checks max_nonfinite_steps
        check_closure_interval(closure_interval)
        self.closure_interval = int(closure_interval)
        clip_grad = dict(clip_grad) if clip_grad is not None else None  # mmengine pops 'type' from it
        self._clip_type = clip_grad.get("type", "norm") if clip_grad else None
        agc = clip_grad if self._clip_type == "agc" else None  # mmengine knows only 'norm' and 'value'
        super().__init__(optimizer, accumulative_counts=accumulative_counts, clip_grad=None if agc else clip_grad)
        if agc is not None:  # clipped, checked and logged as norm clipping is: grad_norm before the clip
            self.clip_grad_kwargs = {k: v for k, v in agc.items() if k != "type"}
            self.clip_func = adaptive_clip_grad_
            self.grad_name = "grad_norm"
        # Device-side flag: every loss of the current accumulation window was finite (None: none seen).
        self._loss_finite: torch.Tensor | None = None
        # Device-side sum of the window's losses and their count: the stop message compares losses.
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def _clip_advice(self) -> str | None:
        """No clipping advice when the config already clips (suggesting it again would mislead)."""
        return None if self.clip_grad_kwargs else self.clip_advice

    def _guards_nonfinite(self) -> bool:
        """Whether this wrapper checks for non-finite values (subclasses with a loss scaler say no)."""
        return True

    def drive_train_step(self, model: torch.nn.Module, data: Any) -> dict:
        """One training iteration by the driver of this optimizer's kind (closure, loss list, ...).

        ``NotImplemented`` for a plain optimizer: the caller
        (:func:`~visdet.engine.optim.wrappers.train_step.train_step`) then runs
        mmengine's ``model.train_step``.
        """
        # Chosen once per optimizer object, not every iteration: choosing looks the class up in the catalogue.
        cached = getattr(self, "_driver_choice", None)
        if cached is None or cached[0] is not self.optimizer:
            cached = self._driver_choice = (self.optimizer, driver_for(self.optimizer))
        found = cached[1]
        return NotImplemented if found is None else found[1](self, model, data)

    def update_params(  # type: ignore[override]
        self, loss: torch.Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None
    ) -> None:
        """Back-propagate ``loss`` and, at the end of an accumulation window, step.

        Whether ``loss`` is finite is recorded on its device, without waiting
        for it; the window's step is skipped if any of its losses was not.
        The backward pass still runs (deciding to skip it would cost a host
        sync per micro-batch, and under torch.distributed every rank must run
        it to keep DDP's all-reduce in step); its gradients are then dropped.

        Args:
            loss: The loss of the current iteration.
            step_kwargs: Passed to :meth:`torch.optim.Optimizer.step`.
            zero_kwargs: Passed to :meth:`torch.optim.Optimizer.zero_grad`.

        Raises:
            NonFiniteTrainingError: when ``max_nonfinite_steps`` steps in a
                row were skipped.
        """
        self.record_loss(loss)
        super().update_params(loss, step_kwargs, zero_kwargs)

    def record_loss(self, loss: torch.Tensor) -> None:
        """Note on its device whether ``loss`` is finite (and its value, for the stop message), without waiting.

        :meth:`step` skips the window's update if any recorded loss was not
        finite. ``update_params`` calls it; a driver that back-propagates
        itself (``wrappers/drivers/loss_list.py``) calls it before ``step``.
        """
        if self._guards_nonfinite():
            value = loss.detach()
            finite = torch.isfinite(value).all()
            self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
            value = value.float().sum()
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._loss_count += 1

    def step(self, **kwargs: Any) -> None:
        """Clip gradients if configured, then update the parameters, unless something is non-finite.

        A skipped step zeroes the gradients and leaves the parameters and the
        optimizer state untouched. The check is fused: one norm over all
        gradients (the clipping norm when clipping by norm), read back to the
        host together with the loss flag in one transfer.

        Args:
            **kwargs: Passed to :meth:`torch.optim.Optimizer.step`.

        Raises:
            NonFiniteTrainingError: when ``max_nonfinite_steps`` steps in a
                row were skipped.
        """
        if not self._guards_nonfinite():
            super().step(**kwargs)
            return
        loss_finite, self._loss_finite = self._loss_finite, None
        loss_sum, self._loss_sum = self._loss_sum, None
        loss_count, self._loss_count = self._loss_count, 0
        if self._clip_type in NORM_CLIPS:
            norm = self._clip_grad_norm()  # the total norm: non-finite iff some gradient is
        else:
            norm = self._grad_max_abs()  # before value clipping, which would make inf finite
            if self.clip_grad_kwargs:
                self._clip_grad_norm()
        if norm is None and loss_finite is None:  # nothing to check (no gradients, no loss seen)
            self.optimizer.step(**kwargs)
            self._applied()
            return
        device = norm.device if norm is not None else loss_finite.device
        false = torch.zeros((), dtype=torch.bool, device=device)
        flags = torch.stack([
            false if loss_finite is None else ~loss_finite.to(device),
            false if norm is None else ~torch.isfinite(norm),
        ]).float()
        if _distributed():  # a loss is per rank: decide together, or the replicas drift apart
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        extras = [] if loss_sum is None else [(loss_sum / loss_count).to(device).reshape(1)]
        if norm is not None:
            extras.append(norm.detach().float().reshape(1))
        values = torch.cat([flags, *extras]).tolist()  # the one host sync of the step
        loss_bad, grads_bad = values[0] > 0, values[1] > 0
        loss_value = values[2] if loss_sum is not None else None
        if self._clip_type in NORM_CLIPS and norm is not None:
            # Also on a skipped step: its own (non-finite) norm, not the last good step's value left in the hub.
            self.message_hub.update_scalar(f"train/{self.grad_name}", values[-1])
        if loss_bad or grads_bad:
            self.optimizer.zero_grad()
            self._skip(LOSS if loss_bad else GRADS, loss_value)
            return
        self.optimizer.step(**kwargs)
        self._applied(loss_value)

    def _grads(self) -> list[torch.Tensor]:
        grads = []
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is not None:
                    grads.append(grad.coalesce().values() if grad.is_sparse else grad)
        return grads

    def _grad_max_abs(self) -> torch.Tensor | None:
        """The largest absolute gradient value (NaN if any is NaN), in one fused pass; None without gradients."""
        grads = self._grads()
        if not grads:
            return None
        # The inf-norm cannot overflow, unlike the 2-norm of float16 gradients. One aminmax per tensor rather
        # than get_total_norm(inf): on the CPU its abs-then-max pass over a Faster R-CNN's 41M gradients took
        # ~65 ms an iteration, aminmax ~15 ms (the same value: a maximum is exact; NaN and inf propagate).
        # float64 for the stack: a float64 gradient's maximum stays what it is.
        device = grads[0].device
        peaks = [torch.stack(torch.aminmax(g)).abs().amax().to(device, torch.float64) for g in grads if g.numel()]
        return torch.stack(peaks).amax() if peaks else torch.zeros((), dtype=torch.float64, device=device)

    def _clip_grad_norm(self) -> torch.Tensor | None:
        """Clip gradients as configured; the total norm for norm clipping (None for value clipping)."""
        params = [
            p for group in self.optimizer.param_groups for p in group["params"]
            if p.requires_grad and p.grad is not None
        ]
        if not params:
            return None
        return self.clip_func(params, **self.clip_grad_kwargs)

    def _clip_grad(self) -> None:
        """Clip gradients and log the norm, as mmengine does (used by AmpOptimWrapper's scaler path)."""
        norm = self._clip_grad_norm()
        if norm is not None:
            self.message_hub.update_scalar(f"train/{self.grad_name}", float(norm))
