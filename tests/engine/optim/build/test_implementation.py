"""The builder picks fused/foreach when the config does not say, and it computes the same update."""
from __future__ import annotations

import copy

import pytest
import torch

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError


def build(model, optimizer, paramwise_cfg=None):
    return OptimWrapperConstructor(dict(optimizer=optimizer), paramwise_cfg)(model).optimizer


def test_cpu_adamw_defaults_to_fused(small_net):
    assert build(small_net, dict(type="AdamW", lr=1e-3)).defaults["fused"] is True


def test_optimizer_without_fused_kernel_gets_foreach(small_net):
    optimizer = build(small_net, dict(type="RMSprop", lr=1e-3))
    assert optimizer.defaults["foreach"] is True


def test_config_choice_is_respected(small_net):
    optimizer = build(small_net, dict(type="AdamW", lr=1e-3, fused=False))
    assert optimizer.defaults["fused"] is False and optimizer.defaults["foreach"] is None
    optimizer = build(small_net, dict(type="AdamW", lr=1e-3, foreach=True))
    assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]


def test_fused_and_foreach_together_is_a_config_error(small_net):
    ctor = OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3, fused=True, foreach=True)))
    with pytest.raises(OptimizerConfigError, match="exclude each other"):
        ctor(small_net)


def test_classes_without_the_options_are_left_alone(small_net):
    optimizer = build(small_net, dict(type="Lion", lr=1e-4))  # bitsandbytes: its own kernels
    assert "fused" not in optimizer.defaults


@pytest.mark.parametrize(
    "optimizer",
    [
        dict(type="AdamW", lr=1e-2, weight_decay=0.05),
        dict(type="Adam", lr=1e-2, amsgrad=True),
        dict(type="SGD", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
        dict(type="Adagrad", lr=0.1),
        dict(type="RMSprop", lr=1e-2, momentum=0.5),
    ],
    ids=lambda c: c["type"],
)
def test_chosen_implementation_matches_the_plain_loop(small_net, optimizer):
    """Same gradients, several steps, several groups: chosen vs single-tensor loop agree."""
    paramwise = None
    if "weight_decay" in optimizer:
        paramwise = dict(norm_decay_mult=0.0, custom_keys={"fc2": dict(lr_mult=0.5)})
    plain_model = copy.deepcopy(small_net)
    initial = copy.deepcopy(small_net.fc1.weight.detach())
    chosen = build(small_net, optimizer, paramwise)
    loop = {"foreach": False, **({"fused": False} if "fused" in chosen.defaults else {})}
    plain = build(plain_model, {**optimizer, **loop}, paramwise)
    assert chosen.defaults.get("fused") or chosen.defaults.get("foreach")
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    for _ in range(5):
        for model, opt in ((small_net, chosen), (plain_model, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for (name, a), b in zip(small_net.named_parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(small_net.fc1.weight, initial)  # the steps did move the weights


def test_sparse_gradients_keep_torch_default():
    """nn.Embedding(sparse=True) has dense parameters but sparse gradients, which fused kernels refuse."""

    class Bag(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4, sparse=True)
            self.fc = torch.nn.Linear(4, 1)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.fc(self.emb(idx)).sum()

    for optimizer in (dict(type="SGD", lr=0.1), dict(type="Adagrad", lr=0.1)):
        model = Bag()
        wrapper = OptimWrapperConstructor(dict(optimizer=optimizer))(model)
        assert not wrapper.optimizer.defaults.get("fused") and not wrapper.optimizer.defaults.get("foreach")
        before = model.emb.weight.detach().clone()
        wrapper.update_params(model(torch.tensor([1, 2, 3])))
        assert not torch.equal(before, model.emb.weight)
