"""The lr finder's reading of a curve: debiased smoothing and the two suggestions, on curves with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from visdet.choosing.lr_finder.suggestion import DebiasedEma, min_at_start, min_loss_lr, smooth, steepest_descent_lr

# log10(lr) from -7 to 0 in steps of 0.1; a piecewise-linear loss in log lr: flat, a gentle fall, the steepest
# fall on [-4, -3.5] (slope -2), a gentle fall to the minimum at -2, then a steep rise (divergence).
X = np.round(np.linspace(-7.0, 0.0, 71), 10)
LRS = list(10.0 ** X)


def _curve() -> list[float]:
    def f(x: float) -> float:
        if x <= -5:
            return 3.0
        if x <= -4:
            return 3.0 - 0.5 * (x + 5)
        if x <= -3.5:
            return 2.5 - 2.0 * (x + 4)
        if x <= -2:
            return 1.5 - 0.5 * (x + 3.5)
        return 0.75 + 3.0 * (x + 2)
    return [f(x) for x in X]


def test_steepest_descent_is_in_the_steepest_segment():
    lr = steepest_descent_lr(LRS, _curve())
    assert 10 ** -4 < lr < 10 ** -3.5


def test_steepest_descent_skips_the_noisy_first_points():
    curve = _curve()
    curve[0] = 50.0  # an unsettled first average: the steepest fall of all, between points 0 and 1
    lr = steepest_descent_lr(LRS, curve)
    assert 10 ** -4 < lr < 10 ** -3.5


def test_min_loss_lr_is_a_tenth_of_the_minimum():
    assert min_loss_lr(LRS, _curve()) == pytest.approx(10 ** -2 / 10)


def test_min_loss_lr_is_never_below_the_sweep():
    rising = [1.0 + 0.1 * i for i in range(10)]  # lowest at the first lr: the range started too high
    assert min_loss_lr(LRS[30:40], rising) == pytest.approx(LRS[30])
    assert min_at_start(LRS[30:40], rising) and not min_at_start(LRS, _curve())


def test_a_non_finite_tail_is_left_out():
    curve = _curve()
    cut = int(np.searchsorted(X, -1.0))
    curve[cut] = math.nan  # the sweep stopped on a NaN loss there
    assert min_loss_lr(LRS[:cut + 1], curve[:cut + 1]) == pytest.approx(10 ** -3)
    assert 10 ** -4 < steepest_descent_lr(LRS[:cut + 1], curve[:cut + 1]) < 10 ** -3.5


def test_no_descent_and_too_few_points_give_none():
    rising = [float(i) for i in range(10)]
    assert steepest_descent_lr(LRS[:10], rising) is None
    assert steepest_descent_lr(LRS[:2], [2.0, 1.0]) is None
    assert min_loss_lr([], []) is None


def test_debiased_average_of_a_constant_is_the_constant():
    # The plain EMA would read 0.02 x 5 = 0.1 after one value; the bias correction gives 5 from the first.
    assert smooth([5.0] * 4, 0.98) == pytest.approx([5.0] * 4)
    ema = DebiasedEma(0.5)
    assert ema.update(2.0) == pytest.approx(2.0)
    assert ema.update(4.0) == pytest.approx((0.25 * 2.0 + 0.5 * 4.0) / 0.75)
