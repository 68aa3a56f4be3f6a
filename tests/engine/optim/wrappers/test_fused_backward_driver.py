"""The fused-backward driver (wrappers/drivers/fused_backward.py): LOMO/AdaLOMO stepped inside backward.

A small mmengine model with a conv, BN and a linear layer stands in for the
detector (configs/faster_rcnn_adalomo.py trains the real one in
tests/configs/test_optimizer_family_configs.py); it can poison one forward's
loss (NaN) or one gradient (inf under a finite loss).
"""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.optim.scheduler import LinearLR
from pytorch_optimizer import LOMO, AdaLOMO
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError
from visdet.engine.optim.wrappers.train_step import driver_for, train_step


class _InfGrad(torch.autograd.Function):
    """Identity forward; an inf gradient backward (a finite loss with a non-finite gradient)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class Net(BaseModel):
    """conv -> BN -> linear regression; ``poison_loss`` / ``poison_grad`` spoil the next forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 1)
        self.poison_loss = False
        self.poison_grad = False

    def forward(self, inputs, targets=None, mode="loss"):
        features = self.bn(self.conv(inputs)).mean((2, 3))
        if self.poison_grad:
            features = _InfGrad.apply(features)
        loss = ((self.fc(features).squeeze(1) - targets) ** 2).mean()
        if self.poison_loss:
            loss = loss * float("nan")
        self.poison_loss = self.poison_grad = False
        return {"loss": loss}


def _data(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randn(8, 1, 6, 6, generator=gen), "targets": torch.randn(8, generator=gen)}


def _wrapper(model: nn.Module, optimizer: dict, **wrapper: object):
    return OptimWrapperConstructor({"optimizer": optimizer, **wrapper})(model)


def _snapshot(model: nn.Module, wrapper) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.optimizer.state_dict())


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif torch.is_tensor(x):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("optimizer", [dict(type="AdaLOMO", lr=5e-2), dict(type="LOMO", lr=5e-2),
                                       dict(type="Lomo", lr=5e-2)], ids=lambda c: c["type"])
def test_fused_optimizers_train_through_the_driver_with_the_scheduled_lr(optimizer):
    model = Net()
    wrapper = _wrapper(model, optimizer)
    assert driver_for(wrapper.optimizer)[0] == "fused_backward"
    scheduler = LinearLR(wrapper, start_factor=0.5, by_epoch=False, begin=0, end=4)
    data = _data()
    losses = []
    for _ in range(8):
        scheduled = wrapper.optimizer.param_groups[0]["lr"]
        losses.append(float(train_step(model, data, wrapper)["loss"]))
        assert wrapper.optimizer.lr == scheduled  # it stepped with the scheduler's lr
        scheduler.step()
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(p.grad is None for p in model.parameters())  # LOMO keeps no gradients


def test_a_nan_loss_skips_before_backward_and_leaves_everything_bit_identical():
    model = Net()
    wrapper = _wrapper(model, dict(type="AdaLOMO", lr=1e-2))
    data = _data()
    train_step(model, data, wrapper)
    before = _snapshot(model, wrapper)
    model.poison_loss = True
    train_step(model, data, wrapper)
    after = _snapshot(model, wrapper)
    assert wrapper.nonfinite_skips == 1 and wrapper.optimizer.num_steps == 1
    assert _same(before[1], after[1])
    # BN's running statistics move in the forward, as in any skipped step; the weights do not.
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0] if "running" not in k and "batches" not in k)
    train_step(model, data, wrapper)
    assert wrapper.consecutive_nonfinite == 0 and wrapper.optimizer.num_steps == 2


def test_clip_grad_becomes_the_optimizers_clipping_and_an_inf_gradient_skips_the_step():
    model = Net()
    wrapper = _wrapper(model, dict(type="AdaLOMO", lr=1e-2), clip_grad=dict(max_norm=0.5))
    assert wrapper.optimizer.clip_grad_norm == 0.5 and not wrapper.clip_grad_kwargs
    data = _data()
    train_step(model, data, wrapper)
    norm = wrapper.message_hub.get_scalar("train/grad_norm").current()
    assert norm > 0.5  # the first pass's norm is logged; the update was clipped to 0.5
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "batches" not in k}
    model.poison_grad = True
    train_step(model, data, wrapper)
    assert wrapper.nonfinite_skips == 1
    assert all(torch.equal(weights[k], model.state_dict()[k]) for k in weights)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_without_clipping_a_non_finite_update_stops_training_with_advice():
    model = Net()
    wrapper = _wrapper(model, dict(type="AdaLOMO", lr=1e-2))
    model.poison_grad = True
    with pytest.raises(NonFiniteTrainingError, match="clip_grad=dict"):
        train_step(model, _data(), wrapper)


def test_lomo_drops_a_non_finite_gradient_itself():
    """pytorch-optimizer's LOMO checks each gradient for overflow and skips that tensor's update."""
    model = Net()
    wrapper = _wrapper(model, dict(type="LOMO", lr=1e-2))
    model.poison_grad = True
    train_step(model, _data(), wrapper)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_adalomo_checkpoint_resumes_exactly():
    """AdaLOMO's factored moments and step count travel in the wrapper's state dict."""
    model, data = Net(), _data()
    wrapper = _wrapper(model, dict(type="AdaLOMO", lr=1e-2))
    for _ in range(3):
        train_step(model, data, wrapper)
    twin = copy.deepcopy(model)
    twin_wrapper = _wrapper(twin, dict(type="AdaLOMO", lr=1e-2))
    twin_wrapper.load_state_dict(copy.deepcopy(wrapper.state_dict()))
    assert isinstance(twin_wrapper.optimizer, AdaLOMO) and twin_wrapper.optimizer.num_steps == 3
    for seed in range(2):
        train_step(model, _data(seed), wrapper)
        train_step(twin, _data(seed), twin_wrapper)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_frozen_parameters_are_left_alone():
    model = Net()
    model.conv.requires_grad_(False)
    frozen = model.conv.weight.detach().clone()
    wrapper = _wrapper(model, dict(type="LOMO", lr=1e-2))
    assert isinstance(wrapper.optimizer, LOMO)
    fc = model.fc.weight.detach().clone()
    train_step(model, _data(), wrapper)
    assert torch.equal(frozen, model.conv.weight) and not torch.equal(fc, model.fc.weight)
