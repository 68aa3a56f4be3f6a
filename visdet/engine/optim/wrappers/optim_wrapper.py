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
  ``train/nonfinite_skips`` (so it appears in the training log); with norm
  clipping a skipped step logs its own (non-finite) ``grad_norm``, not the
  last good step's value;
* ``max_nonfinite_steps`` skips in a row raise :class:`NonFiniteTrainingError`,
  whose message says what is true of the checkpoints on disk: the iteration
  the parameters were last updated at, whether the loss they give was already
  non-finite or abnormal (over ten times the run's first losses), which
  checkpoints hold them and the last one saved before them, with its loss; it
  suggests gradient clipping only when the config does not clip already;
* both counters travel in the checkpoint (``state_dict()['nonfinite']``), so a
  resumed run neither forgets earlier skips nor resets a streak.

With float16 AMP a ``GradScaler`` already skips non-finite steps and lowers the
scale, so :class:`~visdet.engine.optim.wrappers.amp_wrapper.AmpOptimWrapper` turns the
guard off when it uses one.
"""
from __future__ import annotations

import logging
import math
import os
import statistics
from typing import Any

import torch

from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError
from visdet.engine.optim.config.arguments import check_int_at_least
from visdet.engine.optim.config.wrapper_checks import check_clip_grad

import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)

from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper as MMEngineOptimWrapper

from visdet.registry import OPTIM_WRAPPERS

KEY = "optim_wrapper"
#: Message-hub scalar holding the number of skipped steps (logged as ``nonfinite_skips``).
SKIPS_SCALAR = "train/nonfinite_skips"
LOSS, GRADS = "loss", "gradients"
#: Key of the skip counters in :meth:`OptimWrapper.state_dict`.
COUNTERS_KEY = "nonfinite"


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


#: How many finite losses at the start of a run are the baseline the stop message compares with.
BASELINE_STEPS = 5
#: A finite loss this many times the run's first losses counts as diverged.
DIVERGED_FACTOR = 10.0


def _fmt(loss: float | None) -> str:
    return "unknown" if loss is None else f"{loss:.4g}"


class NonFiniteSkipCounter:
    """Counts, logs and limits skipped non-finite steps; shared by visdet's OptimWrapper and DeepSpeed's.

    The host class decides when a step is skipped and calls :meth:`_skip`, and
    calls :meth:`_applied` after a step it applied; the counters travel in its
    state dict under :data:`COUNTERS_KEY`. Listed before the mmengine wrapper in
    the bases, so its ``state_dict`` wraps theirs.

    To say truthfully what the checkpoints hold when it stops training, it also
    keeps the run's first losses, the iteration and loss of the last applied
    step and of the first skipped one, and each checkpoint mmengine's
    ``CheckpointHook`` announces in the message hub (``last_ckpt``,
    ``best_ckpt*``) with the loss of the first step after it (the loss its
    parameters give). A skipped step changes no parameter, so every checkpoint
    saved since the last applied step holds that step's parameters.
    """

    #: What the stop message suggests for clipping (DeepSpeed's wrapper points at its own key).
    clip_advice = f"gradient clipping ({KEY}.clip_grad=dict(max_norm=35, norm_type=2))"

    def _init_counters(self, max_nonfinite_steps: int) -> None:
        check_int_at_least(max_nonfinite_steps, "max_nonfinite_steps", f"{KEY}.max_nonfinite_steps", 1)
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.nonfinite_skips = 0
        self.consecutive_nonfinite = 0
        self._steps_seen = 0  # real steps (applied or skipped): the position when no Runner says the iteration
        self._first_losses: list[float] = []
        self._last_update: tuple[int, float | None] | None = None  # (iteration, loss) of the last applied step
        self._streak_start: tuple[int, float | None] | None = None  # the same for the first skipped step in a row
        self._hub_checkpoints: dict[str, str] = {}  # message-hub key -> the path it named at the last step
        self._checkpoints: dict[str, tuple[int, float | None]] = {}  # path -> (saved after iteration, its loss)

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

    def _iteration(self) -> int:
        """The 1-based training iteration of the current step (the Runner's), else the count of real steps."""
        iteration = MessageHub.get_current_instance().get_info("iter")
        return iteration + 1 if isinstance(iteration, int) else self._steps_seen

    def _where(self) -> str:
        iteration = MessageHub.get_current_instance().get_info("iter")
        if isinstance(iteration, int):
            return f"iteration {iteration + 1}"
        return f"update call {getattr(self, '_inner_count', '?')}"

    def _observe(self, loss: float | None, applied: bool) -> None:
        """Record one real step: the baseline losses, the checkpoints saved since the last step, and its outcome."""
        self._steps_seen += 1
        iteration = self._iteration()
        runtime_info = MessageHub.get_current_instance().runtime_info
        for key, path in runtime_info.items():
            if (key == "last_ckpt" or key.startswith("best_ckpt")) and isinstance(path, str) \
                    and self._hub_checkpoints.get(key) != path:
                # Saved between the previous step and this one: this step's loss is what its parameters give.
                self._hub_checkpoints[key] = path
                self._checkpoints[path] = (iteration - 1, loss)
        if loss is not None and math.isfinite(loss) and len(self._first_losses) < BASELINE_STEPS:
            self._first_losses.append(loss)
        if applied:
            self._last_update = (iteration, loss)
        elif self.consecutive_nonfinite == 0:
            self._streak_start = (iteration, loss)

    def _applied(self, loss: float | None = None) -> None:
        """A step was applied: the streak of skipped steps ends."""
        self._observe(loss, applied=True)
        self.consecutive_nonfinite = 0

    def _clip_advice(self) -> str | None:
        """The clipping suggestion, or None when clipping is already configured."""
        return self.clip_advice

    def _precision_advice(self) -> str | None:
        """A precision suggestion for a wrapper that autocasts to a 16-bit float (None otherwise)."""
        dtype = getattr(self, "cast_dtype", None)
        if dtype in (torch.float16, torch.bfloat16):
            return f"float32 instead of {str(dtype).removeprefix('torch.')}"
        return None

    def _judge(self, loss: float | None) -> tuple[bool | None, str]:
        """Whether ``loss`` is diverged (None: unknown), and the words for it against the run's first losses."""
        if loss is None:
            return None, "unknown"
        if not math.isfinite(loss):
            return True, f"already non-finite ({_fmt(loss)})"
        if not self._first_losses:
            return None, _fmt(loss)
        baseline = statistics.median(self._first_losses)
        start = f"against {_fmt(baseline)} at the start of this run"
        if loss > DIVERGED_FACTOR * abs(baseline):
            return True, f"already abnormal ({_fmt(loss)}, {start})"
        return False, f"normal ({_fmt(loss)}, {start})"

    def _existing(self, paths: list[str]) -> list[str]:
        return [p for p in paths if os.path.exists(p)]

    def _parameters_story(self) -> str:
        """What the parameters and the checkpoints on disk hold, as far as this wrapper saw them."""
        start_iteration, start_loss = self._streak_start or (self._iteration(), None)
        if self._last_update is None:
            return (f"No step was applied in this run before the first skipped one (iteration {start_iteration}): "
                    "the parameters are the ones it started from.")
        last_iteration = self._last_update[0]
        bad, words = self._judge(start_loss)
        story = [f"The parameters were last updated at iteration {last_iteration}; the loss they give "
                 f"(iteration {start_iteration}) was {words}."]
        by_time = sorted(self._checkpoints.items(), key=lambda item: item[1][0])
        since = self._existing([p for p, (after, _) in by_time if after >= last_iteration])
        before = self._existing([p for p, (after, _) in by_time if after < last_iteration])
        if since:
            verdict = "diverged parameters: do not resume from or evaluate them" if bad else "these parameters"
            story.append(f"Checkpoints saved since hold these {verdict}: {', '.join(since)}.")
        if before:
            path = before[-1]
            after, loss = self._checkpoints[path]
            earlier_bad, earlier_words = self._judge(loss)
            story.append(f"The last checkpoint saved before them is {path} (after iteration {after}); the loss its "
                         f"parameters give (iteration {after + 1}) was {earlier_words}"
                         + (": it had already diverged too." if earlier_bad else "."))
        elif bad:
            story.append("No checkpoint was saved before them: start the run again with the changes below.")
        if not since and not bad:
            story.append("No checkpoint was saved since they were last updated.")
        return " ".join(story)

    def _skip(self, what: str, loss: float | None = None) -> None:
        """Count and log one skipped step; raise after ``max_nonfinite_steps`` in a row."""
        self._observe(loss, applied=False)
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
            advice = [f"a lower learning rate ({KEY}.optimizer.lr) or a longer warmup", self._clip_advice(),
                      self._precision_advice(),
                      "checking the data for NaN/inf values, empty or degenerate boxes and wrong labels"]
            raise NonFiniteTrainingError(
                f"{self.consecutive_nonfinite} optimizer steps in a row had a non-finite loss or gradients "
                f"(the last: {what}, at {where}); training stopped ({KEY}.max_nonfinite_steps="
                f"{self.max_nonfinite_steps}). {self._parameters_story()} Things to try: "
                f"{'; '.join(a for a in advice if a)}.",
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
        # Device-side sum of the window's losses and their count: the stop message compares losses.
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def _clip_advice(self) -> str | None:
        """No clipping advice when the config already clips (suggesting it again would mislead)."""
        return None if self.clip_grad_kwargs else self.clip_advice

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
            value = loss.detach()
            finite = torch.isfinite(value).all()
            self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
            value = value.float().sum()
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._loss_count += 1
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
        loss_sum, self._loss_sum = self._loss_sum, None
        loss_count, self._loss_count = self._loss_count, 0
        if self._clip_type == "norm":
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
        if self._clip_type == "norm" and norm is not None:
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
