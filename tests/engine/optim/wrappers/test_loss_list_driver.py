"""The loss-list driver (wrappers/drivers/loss_list.py): PCGrad gets the model's loss terms one by one."""
from __future__ import annotations

import pytest
import torch
from mmengine.model import BaseModel

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.builder import build_optim_wrapper
from visdet.engine.optim.wrappers.drivers.loss_list import loss_terms
from visdet.engine.optim.wrappers.train_step import train_step


class TwoTasks(BaseModel):
    """Two losses whose gradients conflict on the shared weight, as a detector's RPN and RoI terms can."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = torch.nn.Linear(4, 4)
        self.scale = 1.0

    def forward(self, inputs, data_samples=None, mode="loss"):
        out = self.shared(inputs)
        return {"loss_a": (out - 1).square().mean() * self.scale, "loss_b": [(out + 1).square().mean() * 0.5],
                "acc": out.detach().mean()}


def _wrapper(model, **extra):
    cfg = dict(optimizer=dict(type="PCGrad", optimizer=dict(type="SGD", lr=0.1)), **extra)
    return build_optim_wrapper(model, cfg)


def _batch():
    return {"inputs": torch.randn(8, 4, generator=torch.Generator().manual_seed(0))}


def test_terms_are_the_loss_entries_summed_like_parse_losses():
    losses = {"loss_cls": torch.tensor([1.0, 3.0]), "loss_bbox": [torch.tensor(1.0), torch.tensor(2.0)],
              "acc": torch.tensor(9.0)}
    assert [t.item() for t in loss_terms(losses)] == [2.0, 3.0]


def test_pcgrad_gets_each_term_and_steps_through_the_wrapper(monkeypatch):
    torch.manual_seed(0)
    model = TwoTasks()
    wrapper = _wrapper(model)
    seen = []
    original = type(wrapper.optimizer).pc_backward
    monkeypatch.setattr(type(wrapper.optimizer), "pc_backward",
                        lambda self, objectives: (seen.append(len(objectives)), original(self, objectives)))
    before = model.shared.weight.detach().clone()
    log_vars = train_step(model, _batch(), wrapper)
    assert seen == [2] and set(log_vars) >= {"loss", "loss_a", "loss_b"}
    assert not torch.equal(before, model.shared.weight)
    assert wrapper.nonfinite_skips == 0


def test_a_non_finite_term_skips_the_step_with_weights_and_state_untouched():
    torch.manual_seed(0)
    model = TwoTasks()
    wrapper = _wrapper(model)
    model.scale = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, _batch(), wrapper)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert wrapper.nonfinite_skips == 1 and not wrapper.optimizer.state


def test_a_wrapper_around_pcgrad_is_driven_too():
    model = TwoTasks()
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(
        type="Lookahead", k=2, optimizer=dict(type="PCGrad", optimizer=dict(type="SGD", lr=0.1)))))
    before = model.shared.weight.detach().clone()
    train_step(model, _batch(), wrapper)
    assert not torch.equal(before, model.shared.weight)


def test_gradient_accumulation_is_refused_naming_the_key():
    model = TwoTasks()
    wrapper = _wrapper(model, accumulative_counts=2)
    with pytest.raises(OptimizerConfigError, match="optim_wrapper.accumulative_counts"):
        train_step(model, _batch(), wrapper)
