"""The non-finite step guard's bookkeeping: count, log and limit skipped steps, and stop with a message.

A wrapper that skips an optimizer step for a non-finite loss or gradients
(visdet's ``OptimWrapper`` and ``AmpOptimWrapper``, DeepSpeed's wrapper in
``visdet.engine.strategies``) decides *when* to skip; the mixin here does the
rest, the same way for all of them:

* each skip is logged at WARNING and counted in the message hub as
  ``train/nonfinite_skips`` (so it appears in the training log);
* ``max_nonfinite_steps`` skips in a row raise :class:`NonFiniteTrainingError`,
  whose message says what is true of the checkpoints on disk: the iteration
  the parameters were last updated at, whether the loss they give was already
  non-finite or abnormal (over ten times the run's first losses), which
  checkpoints hold them and the last one saved before them, with its loss; it
  suggests gradient clipping only when the config does not clip already;
* both counters travel in the checkpoint (``state_dict()['nonfinite']``), so a
  resumed run neither forgets earlier skips nor resets a streak.
"""
from __future__ import annotations

import logging
import math
import os
import statistics

import torch
from mmengine.logging import MessageHub, print_log

from visdet.engine.optim.config.wrapper_checks import WRAPPER_KEY, check_max_nonfinite_steps

#: Message-hub scalar holding the number of skipped steps (logged as ``nonfinite_skips``).
SKIPS_SCALAR = "train/nonfinite_skips"
#: What was non-finite, in the skip and stop messages.
LOSS, GRADS = "loss", "gradients"
#: Key of the skip counters in the host wrapper's ``state_dict``.
COUNTERS_KEY = "nonfinite"
#: How many finite losses at the start of a run are the baseline the stop message compares with.
BASELINE_STEPS = 5
#: A finite loss this many times the run's first losses counts as diverged.
DIVERGED_FACTOR = 10.0


def _fmt(loss: float | None) -> str:
    return "unknown" if loss is None else f"{loss:.4g}"


class NonFiniteTrainingError(RuntimeError):
    """Training stopped because too many optimizer steps in a row saw a non-finite loss or gradients.

    Raised by visdet's ``OptimWrapper`` (and ``AmpOptimWrapper`` without a
    loss scaler) when ``optim_wrapper.max_nonfinite_steps`` consecutive steps
    were skipped. It propagates out of ``runner.train()`` before the
    iteration's hooks run, so no checkpoint is written after it.

    Attributes:
        consecutive: How many steps in a row were skipped.
        total: How many steps were skipped since the wrapper was built.
    """

    def __init__(self, message: str, consecutive: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.consecutive = consecutive
        self.total = total


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
    clip_advice = f"gradient clipping ({WRAPPER_KEY}.clip_grad=dict(max_norm=35, norm_type=2))"

    def _init_counters(self, max_nonfinite_steps: int) -> None:
        # Checked here, where every guarded wrapper reads it: they are also built without the constructor
        # (directly, or by the DeepSpeed strategy for a 1-bit optimizer).
        check_max_nonfinite_steps(max_nonfinite_steps)
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
            advice = [f"a lower learning rate ({WRAPPER_KEY}.optimizer.lr) or a longer warmup", self._clip_advice(),
                      self._precision_advice(),
                      "checking the data for NaN/inf values, empty or degenerate boxes and wrong labels"]
            raise NonFiniteTrainingError(
                f"{self.consecutive_nonfinite} optimizer steps in a row had a non-finite loss or gradients "
                f"(the last: {what}, at {where}); training stopped ({WRAPPER_KEY}.max_nonfinite_steps="
                f"{self.max_nonfinite_steps}). {self._parameters_story()} Things to try: "
                f"{'; '.join(a for a in advice if a)}.",
                consecutive=self.consecutive_nonfinite,
                total=self.nonfinite_skips,
            )
