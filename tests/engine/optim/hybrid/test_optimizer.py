"""HybridOptimizer (Muon + AdamW): training, groups, state dicts, schedulers, hooks, zero_grad through views."""
from __future__ import annotations

import io

import pytest
import torch
from hybrid_nets import TinyNet, build_hybrid, loss_of, train
from torch import nn

from visdet.engine.optim.hybrid.matrix_views import matrix_view
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer


def test_muon_plus_adamw_trains_a_conv_net_and_updates_every_parameter():
    model = TinyNet()
    hybrid = build_hybrid(model)
    assert isinstance(hybrid, torch.optim.Optimizer)
    matrix_params = hybrid.optimizers["matrix"].param_groups[0]["params"]
    assert len(matrix_params) == 2 and all(p.ndim == 2 for p in matrix_params)  # hidden Linear + flattened conv
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = train(model, hybrid, 30)
    assert losses[-1] < 0.5 * losses[0], losses
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []
    # Merged state: Muon's momentum for the view, AdamW's moments for the fallback tensors.
    view = next(v for v in hybrid._views if hybrid._views[v] is model.conv.weight)
    assert "momentum_buffer" in hybrid.state[view]
    assert "exp_avg" in hybrid.state[model.fc_cls.weight]
    assert len(hybrid.state) == sum(1 for _ in model.parameters())


def test_param_groups_and_defaults_are_the_sub_optimizers():
    model = TinyNet()
    hybrid = build_hybrid(model)
    muon, adamw = hybrid.optimizers["matrix"], hybrid.optimizers["fallback"]
    assert hybrid.param_groups[0] is muon.param_groups[0] and hybrid.param_groups[1] is adamw.param_groups[0]
    hybrid.param_groups[1]["lr"] = 0.123
    assert adamw.param_groups[0]["lr"] == 0.123
    assert hybrid.defaults["lr"] == 0.02 and "betas" in hybrid.defaults  # first route wins, union of keys
    assert hybrid.param_groups[1] is hybrid.optimizers["fallback"].param_groups[0]  # group 1 is the fallback's
    text = repr(hybrid)
    assert "route 'matrix': Muon" in text and "route 'fallback': AdamW" in text and "2-D views" in text


def test_state_dict_round_trip_continues_identically():
    model = TinyNet(seed=0)
    hybrid = build_hybrid(model)
    train(model, hybrid, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": hybrid.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    assert set(ckpt["optim"]) == {"optimizers"} and set(ckpt["optim"]["optimizers"]) == {"matrix", "fallback"}

    resumed = TinyNet(seed=1)
    resumed.load_state_dict(ckpt["model"])
    resumed_opt = build_hybrid(resumed, muon_lr=0.5, adamw_lr=0.5)  # hyperparameters come from the checkpoint
    resumed_opt.load_state_dict(ckpt["optim"])
    fresh = TinyNet(seed=1)
    fresh.load_state_dict(ckpt["model"])
    fresh_opt = build_hybrid(fresh)  # same weights, no optimizer state: must diverge

    for m, o in ((model, hybrid), (resumed, resumed_opt), (fresh, fresh_opt)):
        train(m, o, 3)
    for (name, p), q, _ in zip(model.named_parameters(), resumed.parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    assert not all(torch.equal(p, r) for p, r in zip(model.parameters(), fresh.parameters()))


def test_load_state_dict_names_missing_and_unexpected_routes():
    model = TinyNet()
    hybrid = build_hybrid(model)
    state = hybrid.state_dict()
    state["optimizers"]["muon"] = state["optimizers"].pop("matrix")
    with pytest.raises(ValueError, match=r"missing route\(s\) 'matrix'; unexpected route\(s\) 'muon'"):
        hybrid.load_state_dict(state)
    with pytest.raises(ValueError, match="a single optimizer's checkpoint"):
        hybrid.load_state_dict(hybrid.optimizers["fallback"].state_dict())
    other = build_hybrid(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="route 'fallback'"):
        other.load_state_dict(hybrid.state_dict())


def test_torch_schedulers_change_both_sub_optimizers():
    model = TinyNet()
    hybrid = build_hybrid(model, muon_lr=0.02, adamw_lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(hybrid, lambda epoch: 0.5**epoch)
    train(model, hybrid, 1)
    sched.step()
    assert hybrid.optimizers["matrix"].param_groups[0]["lr"] == pytest.approx(0.01)
    assert hybrid.optimizers["fallback"].param_groups[0]["lr"] == pytest.approx(0.005)

    hybrid = build_hybrid(model, muon_lr=0.02, adamw_lr=0.01)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(hybrid, T_max=2)
    for _ in range(2):
        train(model, hybrid, 1)
        cosine.step()
    assert [g["lr"] for g in hybrid.param_groups] == pytest.approx([0.0, 0.0])


def test_mmengine_wrapper_schedulers_and_clipping_reach_the_real_gradients():
    from mmengine.optim import OptimWrapper
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    model = TinyNet()
    hybrid = build_hybrid(model, muon_lr=0.02, adamw_lr=0.01)
    wrapper = OptimWrapper(hybrid, clip_grad=dict(max_norm=0.05))
    LinearLR(wrapper, start_factor=0.1, by_epoch=False, begin=0, end=2)
    assert hybrid.optimizers["matrix"].param_groups[0]["lr"] == pytest.approx(0.002)
    assert hybrid.optimizers["fallback"].param_groups[0]["lr"] == pytest.approx(0.001)
    assert wrapper.get_lr()["lr"] == pytest.approx([0.002, 0.001])

    wrapper.backward(loss_of(model))
    unclipped = model.conv.weight.grad.norm()
    wrapper.step()  # clips p.grad for p in param_groups, then steps
    grads = [p.grad for g in hybrid.param_groups for p in g["params"]]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) == pytest.approx(0.05, rel=1e-4)
    assert model.conv.weight.grad.norm() < unclipped  # the parameter's own gradient was clipped

    hybrid = build_hybrid(model, muon_lr=0.02, adamw_lr=0.01)
    wrapper = OptimWrapper(hybrid)
    cosine = CosineAnnealingLR(wrapper, T_max=2, by_epoch=False, eta_min=0.0)
    for _ in range(2):
        wrapper.update_params(loss_of(model))
        cosine.step()
    assert [g["lr"] for g in hybrid.param_groups] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_closure_hooks_and_add_param_group():
    model = TinyNet()
    hybrid = build_hybrid(model)
    calls = []
    hybrid.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    hybrid.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    hybrid.register_state_dict_post_hook(lambda opt, sd: calls.append("state_dict"))

    def closure() -> torch.Tensor:
        calls.append("closure")
        assert torch.is_grad_enabled()
        hybrid.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    before = model.hidden.weight.detach().clone()
    with torch.no_grad():
        loss = hybrid.step(closure)
    assert isinstance(loss, torch.Tensor) and not torch.equal(before, model.hidden.weight)
    hybrid.state_dict()
    assert calls == ["pre", "closure", "post", "state_dict"]

    extra = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="ambiguous"):
        hybrid.add_param_group({"params": [extra.weight]})
    with pytest.raises(ValueError, match="did you mean 'matrix'"):
        hybrid.add_param_group({"params": [extra.weight], "route": "matrx"})
    with pytest.raises(ValueError, match="already optimized by route 'matrix'"):
        hybrid.add_param_group({"params": [model.hidden.weight], "route": "fallback"})
    hybrid.add_param_group({"params": [extra.weight], "route": "matrix", "lr": 0.01})
    assert hybrid.optimizers["matrix"].param_groups[-1]["params"] == [extra.weight]
    assert len(hybrid.param_groups) == 3 and hybrid.param_groups[1] is hybrid.optimizers["matrix"].param_groups[-1]


def test_overlapping_routes_are_rejected():
    model = TinyNet()
    with pytest.raises(ValueError, match="optimized twice, by routes 'a' and 'b'"):
        HybridOptimizer(
            {
                "a": torch.optim.SGD(model.hidden.parameters(), lr=0.1),
                "b": torch.optim.SGD([model.hidden.weight], lr=0.1),
            }
        )
    view = matrix_view(model.conv.weight)
    with pytest.raises(ValueError, match="through its 2-D view"):
        HybridOptimizer(
            {"a": torch.optim.SGD([view], lr=0.1), "b": torch.optim.SGD([model.conv.weight], lr=0.1)},
            views={view: model.conv.weight},
        )


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_clears_view_and_parameter(set_to_none):
    conv = nn.Conv2d(3, 4, 3, bias=False)
    view = matrix_view(conv.weight)
    hybrid = HybridOptimizer({"matrix": torch.optim.SGD([view], lr=0.1)}, views={view: conv.weight})
    x1, x2 = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    conv(x1).sum().backward()
    hybrid.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert view.grad is None and conv.weight.grad is None
    else:
        assert not view.grad.any() and not conv.weight.grad.any()
    conv(x2).square().sum().backward()
    expected = torch.autograd.grad(conv(x2).square().sum(), conv.weight)[0]
    assert torch.allclose(view.grad, expected.reshape(4, -1))  # no stale gradient from x1
