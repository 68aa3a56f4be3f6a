"""MMDetection's ExpMomentumEMA: its momentum schedule, its state, its checks, and every EMA type in visdet's scope."""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

import visdet.models  # noqa: F401  (registers ExpMomentumEMA)
from visdet.models.ema import ExpMomentumEMA


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def _perturb(net: torch.nn.Module, step: int) -> None:
    """New weights and BatchNorm statistics, different at every step."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * (step + 1))
        net[1].running_mean.add_(1.0)


def test_updates_follow_the_exponential_momentum_schedule():
    net = _net()
    ema = ExpMomentumEMA(net, momentum=0.01, gamma=4)
    expected = net[0].weight.detach().clone()
    for step in range(4):
        _perturb(net, step)
        ema.update_parameters(net)
        if step == 0:  # the first update copies
            expected = net[0].weight.detach().clone()
        else:
            m = (1 - 0.01) * math.exp(-(1 + step) / 4) + 0.01
            expected = (1 - m) * expected + m * net[0].weight.detach()
        torch.testing.assert_close(ema.module[0].weight, expected)
    assert int(ema.steps) == 4
    assert ema.momentum_at(10_000) == pytest.approx(0.01)  # annealed to `momentum`


def test_update_buffers_averages_batchnorm_statistics_instead_of_copying_them():
    copied, averaged = (ExpMomentumEMA(_net(), momentum=0.01, gamma=4, update_buffers=flag) for flag in (False, True))
    net = _net()
    for step in range(3):
        _perturb(net, step)
        copied.update_parameters(net)
        averaged.update_parameters(net)
    torch.testing.assert_close(copied.module[1].running_mean, net[1].running_mean)
    assert not torch.allclose(averaged.module[1].running_mean, net[1].running_mean)


def test_a_reloaded_average_continues_the_same_sequence():
    net = _net()
    ema = ExpMomentumEMA(net, momentum=0.01, gamma=4)
    for step in range(2):
        _perturb(net, step)
        ema.update_parameters(net)
    restored = ExpMomentumEMA(_net(), momentum=0.01, gamma=4)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.steps) == 2
    for step in range(2, 4):
        _perturb(net, step)
        ema.update_parameters(net)
        restored.update_parameters(net)
    for a, b in zip(ema.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, name", [
    (dict(momentum=0.0), "momentum"), (dict(momentum=1.0), "momentum"), (dict(momentum="0.1"), "momentum"),
    (dict(gamma=0), "gamma"), (dict(interval=0), "interval"),
])
def test_bad_arguments_are_value_errors_that_name_them(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        ExpMomentumEMA(_net(), **kwargs)


@pytest.mark.parametrize("ema_type", ["ExpMomentumEMA", "ExponentialMovingAverage", "MomentumAnnealingEMA",
                                      "StochasticWeightAverage"])
def test_every_ema_type_builds_in_visdet_scope_the_way_emahook_builds_it(ema_type):
    # mmengine's EMAHook builds through mmengine's root MODELS; the default scope switches it to visdet's.
    with DefaultScope.overwrite_default_scope("visdet"):
        ema = MMENGINE_MODELS.build(dict(type=ema_type), default_args=dict(model=_net()))
    assert type(ema).__name__ == ema_type


def test_registration_survives_a_reimport():
    module = importlib.reload(importlib.import_module("visdet.models.ema"))
    from visdet.registry import MODELS

    assert MODELS.get("ExpMomentumEMA") is module.ExpMomentumEMA
