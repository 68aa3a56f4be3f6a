"""The second-order driver: SophiaH and AdaHessian stepped through visdet's train_step and OptimWrapper.

A small mmengine model (a tanh MLP, so its Hessian is not constant) stands in
for the detector here; tests/configs/test_optimizer_family_configs.py trains the
real one with configs/faster_rcnn_sophiah.py.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from pytorch_optimizer import AdaHessian, Lookahead, SophiaH
from timm.optim import Adahessian as TimmAdahessian
from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.drivers import second_order
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper
from visdet.engine.optim.wrappers.train_step import driver_for, train_step
from visdet.engine.strategies.checks import check_strategy_config
from visdet.engine.strategies.names import StrategyConfigError


class Recorder(nn.Module):
    """A module with a twice-differentiable switch, as the RoI extractor has: records its value per forward."""

    double_backward = False

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.double_backward)
        return x


class TinyModel(BaseModel):
    """A regression MLP in mmengine's interface (forward in 'loss' mode gives a loss dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.switch = Recorder()
        self.poison = False

    def forward(self, inputs, data_samples=None, mode="loss"):  # noqa: ANN001
        x, y = inputs
        loss = ((self.net(self.switch(x)).squeeze(1) - y) ** 2).mean()
        return {"loss": loss * float("nan") if self.poison else loss}


def _data(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)
    return {"inputs": (x, x.sum(1).sin())}


def _setup(cls: type = SophiaH, **kwargs) -> tuple[TinyModel, OptimWrapper]:
    torch.manual_seed(0)
    model = TinyModel()
    wrapper_kwargs = {k: kwargs.pop(k) for k in ("clip_grad", "accumulative_counts") if k in kwargs}
    return model, OptimWrapper(cls(model.parameters(), **kwargs), **wrapper_kwargs)


def _no_graph_left(model: nn.Module) -> bool:
    return all(p.grad is None or p.grad.grad_fn is None for p in model.parameters())


def test_the_driver_is_chosen_from_the_optimizer_not_its_name():
    params = [nn.Parameter(torch.ones(2))]
    assert driver_for(SophiaH(params))[0] == "second_order"
    assert driver_for(AdaHessian(params))[0] == "second_order"
    assert driver_for(Lookahead(SophiaH(params)))[0] == "second_order"  # through a wrapper-optimizer
    assert driver_for(torch.optim.AdamW(params)) is None

    class Custom(torch.optim.SGD):  # an uncatalogued class: recognised by its step's `hessian` parameter
        def step(self, closure=None, hessian=None):  # noqa: ANN001
            return super().step(closure)

    assert second_order.applies_to(Custom(params, lr=0.1))


@pytest.mark.parametrize("cls, kwargs", [
    (SophiaH, {"lr": 0.05, "p": 1.0, "update_period": 2}), (AdaHessian, {"lr": 0.1}),
    (TimmAdahessian, {"lr": 0.1}),  # timm's: no update_period, so the graph is kept at every step
])
def test_it_trains_and_frees_the_graph_after_every_step(cls, kwargs):
    model, wrapper = _setup(cls, **kwargs)
    losses = []
    for _ in range(30):
        log_vars = train_step(model, _data(), wrapper)
        assert _no_graph_left(model) and log_vars["loss"].grad_fn is None  # nothing holds the graph
        losses.append(float(log_vars["loss"]))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    estimates = ([s["hessian"] for s in wrapper.optimizer.state.values() if "hessian" in s]
                 or [p.hess for p in model.parameters()])  # timm keeps it on the parameter
    assert estimates and all(torch.isfinite(h).all() and h.abs().sum() > 0 for h in estimates)


class SpyWrapper(OptimWrapper):
    """Records whether each backward kept the graph."""

    def backward(self, loss, **kwargs):  # noqa: ANN001
        self.create_graph_seen = [*getattr(self, "create_graph_seen", []), kwargs.get("create_graph", False)]
        super().backward(loss, **kwargs)


def test_create_graph_and_the_twice_differentiable_path_only_on_the_steps_that_estimate_the_hessian():
    torch.manual_seed(0)
    model = TinyModel()
    wrapper = SpyWrapper(SophiaH(model.parameters(), lr=0.05, update_period=3))
    estimated = []
    for _ in range(7):
        before = [s["hessian"].clone() for s in wrapper.optimizer.state.values()]
        train_step(model, _data(), wrapper)
        after = [s["hessian"] for s in wrapper.optimizer.state.values()]
        estimated.append(not before or any(not torch.equal(b, a) for b, a in zip(before, after)))
    expected = [True, False, False, True, False, False, True]
    assert wrapper.create_graph_seen == expected and model.switch.seen == expected and estimated == expected
    assert model.switch.double_backward is False and "backward" not in vars(wrapper)  # both switched back


def test_a_nonfinite_loss_skips_the_step_and_leaves_parameters_and_state_bit_identical():
    model, wrapper = _setup(SophiaH, lr=0.05, update_period=1)
    train_step(model, _data(), wrapper)
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(wrapper.optimizer.state_dict())
    model.poison = True
    train_step(model, _data(1), wrapper)
    assert wrapper.nonfinite_skips == 1 and _no_graph_left(model)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    after = wrapper.optimizer.state_dict()
    assert after["param_groups"][0]["step"] == state["param_groups"][0]["step"]
    for key, values in state["state"].items():
        assert all(torch.equal(v, after["state"][key][k]) for k, v in values.items() if torch.is_tensor(v))
    model.poison = False
    train_step(model, _data(2), wrapper)  # and it goes on
    assert not all(torch.equal(a, b) for a, b in zip(params, model.parameters()))


def test_clip_grad_clips_the_first_order_gradients_and_accumulation_keeps_the_window_graph():
    model, wrapper = _setup(SophiaH, lr=0.05, update_period=2, clip_grad=dict(max_norm=0.01),
                            accumulative_counts=2)
    seen = []
    original = wrapper.optimizer.step

    def step(*args, **kwargs):  # noqa: ANN002, ANN003
        seen.append(torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters())).item())
        return original(*args, **kwargs)

    wrapper.optimizer.step = step
    for i in range(4):
        train_step(model, _data(i), wrapper)
    assert len(seen) == 2 and all(v <= 0.01 + 1e-6 for v in seen)  # two windows of two, clipped
    assert all(torch.isfinite(s["hessian"]).all() and s["hessian"].abs().sum() > 0
               for s in wrapper.optimizer.state.values())
    assert _no_graph_left(model)


def test_a_float16_loss_scaler_is_refused():
    model, wrapper = _setup(SophiaH)
    wrapper.loss_scaler = object()  # what AmpOptimWrapper(dtype='float16') holds
    with pytest.raises(OptimizerConfigError, match="loss scaler"):
        train_step(model, _data(), wrapper)


@pytest.mark.parametrize("optimizer", [dict(type="SophiaH", lr=0.01),
                                       dict(type="Lookahead", optimizer=dict(type="AdaHessian", lr=0.01))])
def test_deepspeed_and_fsdp_refuse_them_at_check_time(optimizer):
    cfg = Config(dict(runner_type="FlexibleRunner", strategy=dict(type="FSDPStrategy"),
                      optim_wrapper=dict(optimizer=optimizer)))
    with pytest.raises(StrategyConfigError, match="create_graph=True") as raised:
        check_strategy_config(cfg)
    assert "optim_wrapper.optimizer" in str(raised.value)
