"""Reading a learning rate off the range test's curve: steepest descent, and the minimum's lr / 10.

Both rules are the ones fastai's ``lr_find`` and Lightning's ``Tuner.lr_find``
report, computed here on the smoothed loss (a debiased exponential moving
average, as both smooth it):

* steepest descent: the lr where the smoothed loss falls fastest against
  ``log(lr)`` (``numpy.gradient`` over the log-spaced lrs), leaving out the
  noisy first iterations (the average is still settling) and the last ones
  (where the loss turns up or the sweep stopped);
* minimum / 10: a tenth of the lr at the smoothed loss's minimum, the point just
  before divergence backed off by an order of magnitude (Smith, 2017); never
  below the first lr swept (a minimum at the first lrs means the range started
  too high, which :func:`min_at_start` tells).

No library exports these as functions over plain arrays (fastai and Lightning
compute them inside their tuner objects), so they are written here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Fraction of the points left out at each end before looking for the steepest descent (at least one each).
SKIP_START_FRACTION = 0.1
SKIP_END_FRACTION = 0.05


class DebiasedEma:
    """Exponential moving average with bias correction: ``avg / (1 - beta**n)``.

    The plain average starts at 0 and so reads low for the first ``~1/(1-beta)``
    values; dividing by ``1 - beta**n`` removes that (Kingma and Ba's correction,
    as fastai's lr finder smooths).
    """

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)
        self.average = 0.0
        self.count = 0

    def update(self, value: float) -> float:
        """Add ``value``; return the smoothed value so far."""
        self.count += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * float(value)
        return self.average / (1.0 - self.beta ** self.count)


def smooth(values: Sequence[float], beta: float) -> list[float]:
    """Every value's debiased moving average, in order."""
    ema = DebiasedEma(beta)
    return [ema.update(v) for v in values]


def _finite_prefix(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points up to the first non-finite loss (a diverged last iteration carries nothing)."""
    keep = 0
    for loss in losses:
        if not math.isfinite(loss):
            break
        keep += 1
    return np.asarray(lrs[:keep], dtype=float), np.asarray(losses[:keep], dtype=float)


def steepest_descent_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The lr where the smoothed loss descends fastest against log(lr); None if it never descends.

    The first ``max(1, 10%)`` and last ``max(1, 5%)`` points are left out while
    at least three remain; with fewer than three finite points there is no slope.
    """
    x, y = _finite_prefix(lrs, smoothed)
    n = len(x)
    if n < 3:
        return None
    start, end = max(1, int(n * SKIP_START_FRACTION)), max(1, int(n * SKIP_END_FRACTION))
    if n - start - end < 3:
        start, end = 0, 0
    x, y = x[start:n - end], y[start:n - end]
    slopes = np.gradient(y, np.log10(x))
    best = int(np.argmin(slopes))
    return float(x[best]) if slopes[best] < 0 else None


def min_loss_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """A tenth of the lr at the smoothed loss's minimum, at least the first lr; None without a finite point."""
    x, y = _finite_prefix(lrs, smoothed)
    if len(x) == 0:
        return None
    return max(float(x[int(np.argmin(y))]) / 10.0, float(x[0]))


def min_at_start(lrs: Sequence[float], smoothed: Sequence[float]) -> bool:
    """Whether a tenth of the minimum's lr lies below the sweep (the loss was lowest at its first lrs)."""
    x, y = _finite_prefix(lrs, smoothed)
    return len(x) > 0 and float(x[int(np.argmin(y))]) / 10.0 < float(x[0])
