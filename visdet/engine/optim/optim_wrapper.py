"""The plain optimizer wrapper, with a guard against non-finite losses and gradients.

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
  all gradients) are handled the same way;
* each skip is logged at WARNING and counted in the message hub as
  ``train/nonfinite_skips`` (so it appears in the training log);
* ``max_nonfinite_steps`` skips in a row raise :class:`NonFiniteTrainingError`;
* both counters travel in the checkpoint (``state_dict()['nonfinite']``), so a
  resumed run neither forgets earlier skips nor resets a streak.

With float16 AMP a ``GradScaler`` already skips non-finite steps and lowers the
scale, so :class:`~visdet.engine.optim.amp_wrapper.AmpOptimWrapper` turns the
guard off when it uses one.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from visdet.engine.optim.errors import NonFiniteTrainingError
from visdet.engine.optim.quiet import quiet_import
from visdet.engine.optim.validation import check_clip_grad, check_int_at_least

quiet_import("mmengine.optim")  # it imports bitsandbytes, which may print

from mmengine.logging import MessageHub, print_log  # noqa: E402
from mmengine.optim import OptimWrapper as MMEngineOptimWrapper  # noqa: E402

from visdet.registry import OPTIM_WRAPPERS  # noqa: E402

KEY = "optim_wrapper"
#: Message-hub scalar holding the number of skipped steps (logged as ``nonfinite_skips``).
SKIPS_SCALAR = "train/nonfinite_skips"
LOSS, GRADS = "loss", "gradients"
#: Key of the skip counters in :meth:`OptimWrapper.state_dict`.
COUNTERS_KEY = "nonfinite"


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


class NonFiniteSkipCounter:
    """Counts, logs and limits skipped non-finite steps; shared by visdet's OptimWrapper and DeepSpeed's.

    The host class decides when a step is skipped and calls :meth:`_skip`;
    the counters travel in its state dict under :data:`COUNTERS_KEY`. Listed
    before the mmengine wrapper in the bases, so its ``state_dict`` wraps theirs.
    """

    #: What the stop message suggests for clipping (DeepSpeed's wrapper points at its own key).
    clip_advice = f"gradient clipping ({KEY}.clip_grad=dict(max_norm=35, norm_type=2))"

    def _init_counters(self, max_nonfinite_steps: int) -> None:
        check_int_at_least(max_nonfinite_steps, "max_nonfinite_steps", f"{KEY}.max_nonfinite_steps", 1)
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.nonfinite_skips = 0
        self.consecutive_nonfinite = 0

    def state_dict(self) -> dict:
        """The wrapped state dict plus the skip counters (plain ints: ``weights_only``-safe)."""
        state_dict = super().state_dict()  # type: ignore[misc]
        state_dict[COUNTERS_KEY] = {"total": self.nonfinite_skips, "consecutive": self.consecutive_nonfinite}
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the wrapped state and the skip counters (absent in checkpoints from before they were saved)."""
        state_dict = dict(state_dict)
        counters = state_dict.pop(COUNTERS_KEY, None) or {}
        super().load_state_dict(state_dict)  # type: ignore[misc]
        self.nonfinite_skips = int(counters.get("total", 0))
        self.consecutive_nonfinite = int(counters.get("consecutive", 0))
        if self.nonfinite_skips:
            MessageHub.get_current_instance().update_scalar(SKIPS_SCALAR, self.nonfinite_skips)

    def _where(self) -> str:
        iteration = MessageHub.get_current_instance().get_info("iter")
        if isinstance(iteration, int):
            return f"iteration {iteration + 1}"
        return f"update call {getattr(self, '_inner_count', '?')}"

    def _skip(self, what: str) -> None:
        """Count and log one skipped step; raise after ``max_nonfinite_steps`` in a row."""
        self.nonfinite_skips += 1
        self.consecutive_nonfinite += 1
        MessageHub.get_current_instance().update_scalar(SKIPS_SCALAR, self.nonfinite_skips)
        where = self._where()
        print_log(
            f"Non-finite {what} at {where}: optimizer step skipped, parameters and optimizer state unchanged "
            f"({self.consecutive_nonfinite}/{self.max_nonfinite_steps} in a row, {self.nonfinite_skips} in total)",
            logger="current",
            level=logging.WARNING,
        )
        if self.consecutive_nonfinite >= self.max_nonfinite_steps:
            raise NonFiniteTrainingError(
                f"{self.consecutive_nonfinite} optimizer steps in a row had a non-finite loss or gradients "
                f"(the last: {what}, at {where}); training stopped ({KEY}.max_nonfinite_steps="
                f"{self.max_nonfinite_steps}). The parameters were last updated before the first of these steps; "
                "the last checkpoint saved holds them. Things to try: a lower learning rate "
                f"({KEY}.optimizer.lr) or a longer warmup; {self.clip_advice}; "
                "float32 or bfloat16 instead of float16; checking the data for NaN/inf values, "
                "empty or degenerate boxes and wrong labels.",
                consecutive=self.consecutive_nonfinite,
                total=self.nonfinite_skips,
            )


@OPTIM_WRAPPERS.register_module(name="OptimWrapper", force=True)  # force: survives re-import
class OptimWrapper(NonFiniteSkipCounter, MMEngineOptimWrapper):
    """mmengine's ``OptimWrapper`` that skips steps with a non-finite loss or gradients.

    Args:
        optimizer: The optimizer that updates the parameters.
        accumulative_counts: Update the parameters every this many
            :meth:`update_params` calls, accumulating gradients in between.
        clip_grad: Arguments of ``torch.nn.utils.clip_grad_norm_`` (default,
            or ``type='norm'``) or ``clip_grad_value_`` (``type='value'``).
        max_nonfinite_steps: Stop training with :class:`NonFiniteTrainingError`
            when this many optimizer steps in a row were skipped for a
            non-finite loss or gradients. An integer >= 1.

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
    ) -> None:
        check_int_at_least(accumulative_counts, "accumulative_counts", f"{KEY}.accumulative_counts", 1)
        check_clip_grad(clip_grad, f"{KEY}.clip_grad")
        self._init_counters(max_nonfinite_steps)
        clip_grad = dict(clip_grad) if clip_grad is not None else None  # mmengine pops 'type' from it
        self._clip_type = clip_grad.get("type", "norm") if clip_grad else None
        super().__init__(optimizer, accumulative_counts=accumulative_counts, clip_grad=clip_grad)
        # Device-side flag: every loss of the current accumulation window was finite (None: none seen).
        self._loss_finite: torch.Tensor | None = None

    def _guards_nonfinite(self) -> bool:
        """Whether this wrapper checks for non-finite values (subclasses with a loss scaler say no)."""
        return True

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
        if self._guards_nonfinite():
            finite = torch.isfinite(loss.detach()).all()
            self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        super().update_params(loss, step_kwargs, zero_kwargs)

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
        if self._clip_type == "norm":
            norm = self._clip_grad_norm()  # the total norm: non-finite iff some gradient is
        else:
            norm = self._grad_max_abs()  # before value clipping, which would make inf finite
            if self.clip_grad_kwargs:
                self._clip_grad_norm()
        if norm is None and loss_finite is None:  # nothing to check (no gradients, no loss seen)
            self.optimizer.step(**kwargs)
            return
        device = norm.device if norm is not None else loss_finite.device
        false = torch.zeros((), dtype=torch.bool, device=device)
        flags = torch.stack([
            false if loss_finite is None else ~loss_finite.to(device),
            false if norm is None else ~torch.isfinite(norm),
        ]).float()
        if _distributed():  # a loss is per rank: decide together, or the replicas drift apart
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if norm is not None:
            flags = torch.cat([flags, norm.detach().float().reshape(1)])
        values = flags.tolist()  # the one host sync of the step
        loss_bad, grads_bad = values[0] > 0, values[1] > 0
        if loss_bad or grads_bad:
            self.optimizer.zero_grad()
            self._skip(LOSS if loss_bad else GRADS)
            return
        if self._clip_type == "norm" and norm is not None:
            self.message_hub.update_scalar(f"train/{self.grad_name}", values[2])
        self.optimizer.step(**kwargs)
        self.consecutive_nonfinite = 0

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
        # The inf-norm cannot overflow, unlike the 2-norm of float16 gradients.
        return torch.nn.utils.get_total_norm(grads, norm_type=float("inf"))

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

    def _device(self) -> torch.device:
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                return param.device
        return torch.device("cpu")
