"""Note texts several sources attach to their optimizers, written once."""
from __future__ import annotations

#: Learning-rate-free optimizers (D-Adaptation, Prodigy): lr multiplies the estimate.
LR_IS_A_MULTIPLIER = "set lr=1.0: lr scales the estimated step size"

#: Schedule-free optimizers train on one sequence of points and evaluate on another.
SCHEDULE_FREE_MODES = (
    "call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
    "(visdet's ScheduleFreeHook does both in the Runner)"
)

#: GaLore and APOLLO project only the weights that ``optim_wrapper.low_rank`` names.
LOW_RANK = "projects the weights chosen by optim_wrapper.low_rank (see docs/optimizers.md); the rest is plain"

#: RAdam-style rectification.
RECTIFICATION_WARMUP = "makes no update for its first steps (rectification warm-up)"
