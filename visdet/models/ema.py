"""MMDetection's ``ExpMomentumEMA`` (YOLOX's EMA of the weights), registered in visdet's ``MODELS``.

mmengine ships the averaging machinery (``BaseAveragedModel``, its
``ExponentialMovingAverage``, ``MomentumAnnealingEMA`` and
``StochasticWeightAverage``, all reachable from visdet's scope through the
parent registry) but not the exponential momentum warmup MMDetection's YOLOX
configs name as ``ema_type='ExpMomentumEMA'``; it is written here as a subclass
of mmengine's ``ExponentialMovingAverage`` that only changes ``avg_func``.

The momentum at update ``t`` (0-based, counted by the model's ``steps`` buffer,
so that it resumes with the checkpoint) is::

    m_t = (1 - momentum) * exp(-(1 + t) / gamma) + momentum
    ema = (1 - m_t) * ema + m_t * weights

large at first (the average follows the quickly changing early weights), then
annealed to ``momentum``. mmengine checks ``momentum`` with ``assert``; here a
bad value is a ``ValueError`` that names it, before mmengine's check runs.
"""
from __future__ import annotations

import math

import torch
from mmengine.model import ExponentialMovingAverage
from torch import Tensor, nn

from visdet.registry import MODELS


def check_momentum(momentum: object, name: str = "momentum") -> float:
    """``momentum`` as a float in (0, 1), or a ValueError that names it."""
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 < momentum < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), the weight of the new weights in each update "
                         f"(MMDetection's YOLOX uses 0.0002), got {momentum!r}")
    return float(momentum)


def check_positive(value: object, name: str, kind: type = int) -> None:
    """A ValueError naming ``name`` unless ``value`` is a positive ``kind`` (an int, or any number)."""
    numbers = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, numbers) or value <= 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")


@MODELS.register_module(force=True)  # force: survives re-import
class ExpMomentumEMA(ExponentialMovingAverage):
    """EMA of a model's weights with an exponentially annealed momentum (MMDetection's, used by YOLOX).

    Args:
        model: The model whose weights are averaged (deep-copied).
        momentum: The final weight of the new weights per update, in (0, 1).
        gamma: How many updates the warmup of the momentum lasts, roughly (> 0).
        interval: Average every ``interval`` updates.
        device: Where the averaged copy lives (default: the model's device).
        update_buffers: Average the buffers (BatchNorm statistics) too, instead of copying them.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, gamma: int | float = 2000, interval: int = 1,
                 device: torch.device | None = None, update_buffers: bool = False) -> None:
        check_momentum(momentum)
        check_positive(gamma, "gamma", float)
        check_positive(interval, "interval")
        super().__init__(model=model, momentum=momentum, interval=interval, device=device,
                         update_buffers=update_buffers)
        self.gamma = gamma

    def momentum_at(self, steps: int) -> float:
        """The momentum used by the update after ``steps`` earlier ones."""
        return (1 - self.momentum) * math.exp(-(1 + steps) / self.gamma) + self.momentum

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """``averaged_param`` moved towards ``source_param`` by this step's momentum, in place."""
        averaged_param.lerp_(source_param, self.momentum_at(int(steps)))
