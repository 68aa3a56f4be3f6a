"""Split-by-shape routing, 2-D views of conv kernels, and the HybridOptimizer (Muon + AdamW)."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.optimizer import (
    DEFAULT_FALLBACK_KEYS,
    HybridOptimizer,
    Route,
    format_routes,
    matrix_view,
    route_parameters,
)


class TinyNet(nn.Module):
    """Stem conv, BN, a hidden conv, a domain embedding, a hidden Linear and a head Linear."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.embed = nn.Embedding(4, 32)
        self.hidden = nn.Linear(16, 32)
        self.fc_cls = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(self.conv(x)).mean((2, 3))
        x = F.relu(self.hidden(x) + self.embed(domain))
        return self.fc_cls(x)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(16, 3, 8, 8, generator=gen)
    domain = torch.randint(0, 4, (16,), generator=gen)
    labels = torch.randint(0, 5, (16,), generator=gen)
    return x, domain, labels


def loss_of(model: nn.Module) -> torch.Tensor:
    x, domain, labels = batch()
    return F.cross_entropy(model(x, domain), labels)


def build_hybrid(model: nn.Module, muon_lr: float = 0.02, adamw_lr: float = 0.01) -> HybridOptimizer:
    """What the constructor does: route, view the N-D matrix params, build Muon + AdamW."""
    routes = route_parameters(model, flatten_conv=True)
    params = dict(model.named_parameters())
    matrix, fallback, views = [], [], {}
    for name, route in routes.items():
        param = params[name]
        if route.route == "matrix":
            if param.ndim > 2:
                view = matrix_view(param)
                views[view] = param
                param = view
            matrix.append(param)
        else:
            fallback.append(param)
    return HybridOptimizer(
        {
            "matrix": torch.optim.Muon(matrix, lr=muon_lr, weight_decay=0.0),
            "fallback": torch.optim.AdamW(fallback, lr=adamw_lr, weight_decay=0.0),
        },
        views=views,
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ----------------------------------------------------------------------------- routing


def test_routing_of_a_small_conv_net_with_reasons():
    model = TinyNet()
    model.bn.bias.requires_grad_(False)  # frozen parameters are left out
    routes = route_parameters(model)
    assert list(routes) == [n for n, p in model.named_parameters() if p.requires_grad]
    assert "bn.bias" not in routes
    got = {name: r.route for name, r in routes.items()}
    assert got == {
        "stem.weight": "fallback",
        "stem.bias": "fallback",
        "bn.weight": "fallback",
        "conv.weight": "fallback",  # conv kernel, flatten_conv off
        "embed.weight": "fallback",
        "hidden.weight": "matrix",
        "hidden.bias": "fallback",
        "fc_cls.weight": "fallback",
        "fc_cls.bias": "fallback",
    }
    assert routes["stem.weight"].reason.startswith("first conv layer")
    assert routes["conv.weight"].reason == "conv kernel; set flatten_conv=True to route it to Muon"
    assert routes["embed.weight"].reason == "embedding"
    assert routes["hidden.bias"].reason == "bias"
    assert routes["bn.weight"].reason == "normalization parameter"
    assert "prediction head" in routes["fc_cls.weight"].reason and "fc_cls" in routes["fc_cls.weight"].reason
    assert routes["hidden.weight"] == Route("hidden.weight", "matrix", "2-D weight", (32, 16))
    table = format_routes(routes)
    assert "conv.weight" in table and "1 tensors -> matrix, 8 tensors -> fallback" in table


def test_flatten_conv_routes_hidden_conv_kernels_but_never_the_stem():
    model = TinyNet()
    routes = route_parameters(model, flatten_conv=True)
    assert routes["conv.weight"].route == "matrix"
    assert "16x72" in routes["conv.weight"].reason
    assert routes["stem.weight"].route == "fallback"  # the stem stays on the fallback even when flattening
    assert routes["fc_cls.weight"].route == "fallback"
    # A frozen stem is still the stem: the next conv is a hidden layer.
    model.stem.weight.requires_grad_(False)
    routes = route_parameters(model, flatten_conv=True)
    assert "stem.weight" not in routes and routes["conv.weight"].route == "matrix"


def test_fallback_keys_match_whole_name_parts():
    model = nn.Module()
    model.roi_head = nn.Module()
    model.roi_head.bbox_head = nn.ModuleDict(
        {"fcs": nn.ModuleList([nn.Linear(8, 8)]), "fc_cls": nn.Linear(8, 3), "fc_reg": nn.Linear(8, 4)}
    )
    model.head = nn.ModuleDict({"fc": nn.Linear(8, 2)})
    model.tokens = nn.Parameter(torch.zeros(4, 8))
    model.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
    model.attn = nn.MultiheadAttention(8, 2)
    routes = route_parameters(model, flatten_conv=True)
    assert "head.fc" in DEFAULT_FALLBACK_KEYS
    assert routes["roi_head.bbox_head.fcs.0.weight"].route == "matrix"  # contains 'head.fc' only as a substring
    assert routes["roi_head.bbox_head.fc_cls.weight"].route == "fallback"
    assert routes["roi_head.bbox_head.fc_reg.weight"].route == "fallback"
    assert routes["head.fc.weight"].route == "fallback"
    assert routes["tokens"].route == "fallback" and "not a layer weight" in routes["tokens"].reason
    assert routes["pos_embed"].route == "fallback"
    assert routes["attn.in_proj_weight"].route == "matrix"
    assert routes["attn.out_proj.weight"].route == "matrix"
    # User keys replace the defaults.
    routes = route_parameters(model, fallback_keys=["fcs"])
    assert routes["roi_head.bbox_head.fcs.0.weight"].route == "fallback"
    assert routes["roi_head.bbox_head.fc_cls.weight"].route == "matrix"


def test_bad_routing_arguments_are_config_errors():
    with pytest.raises(OptimizerConfigError, match=r"write \['fc_cls'\]"):
        route_parameters(TinyNet(), fallback_keys="fc_cls")
    with pytest.raises(OptimizerConfigError, match="flatten_conv"):
        route_parameters(TinyNet(), flatten_conv="yes")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- matrix_view


def test_matrix_view_shares_storage_and_updates_the_parameter_in_place():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    assert view.shape == (4, 27) and view.is_leaf and view.requires_grad
    assert view.data_ptr() == conv.weight.data_ptr()
    before = conv.weight.detach().clone()
    opt = torch.optim.SGD([view], lr=0.5)
    conv(torch.randn(2, 3, 5, 5)).square().sum().backward()
    opt.step()
    assert torch.allclose(conv.weight.detach(), before - 0.5 * conv.weight.grad)
    with pytest.raises(ValueError, match="more than 2 dims"):
        matrix_view(nn.Linear(2, 2).weight)


def test_matrix_view_grad_mirrors_and_accumulates():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    x1, x2 = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    g1 = torch.autograd.grad(conv(x1).square().sum(), conv.weight)[0]
    g2 = torch.autograd.grad(conv(x2).square().sum(), conv.weight)[0]
    conv(x1).square().sum().backward()
    assert torch.equal(view.grad, g1.reshape(4, -1))
    assert view.grad.data_ptr() == conv.weight.grad.data_ptr()  # a view of the real gradient
    conv(x2).square().sum().backward()
    assert torch.allclose(view.grad, (g1 + g2).reshape(4, -1))


def test_clipping_the_view_clips_the_parameter_gradient():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    conv(torch.randn(2, 3, 5, 5)).square().sum().backward()
    assert conv.weight.grad.norm() > 1.0
    torch.nn.utils.clip_grad_norm_([view], max_norm=0.1)
    assert torch.allclose(conv.weight.grad.norm(), torch.tensor(0.1), atol=1e-5)


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


def test_matrix_view_of_a_channels_last_kernel_pairs_values_with_their_gradients():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    view = matrix_view(conv.weight)
    assert view.data_ptr() == conv.weight.data_ptr()
    conv(torch.randn(2, 3, 5, 5).to(memory_format=torch.channels_last)).square().sum().backward()
    assert torch.allclose((view * view.grad).sum(), (conv.weight * conv.weight.grad).sum())
    assert torch.equal(view.detach().sort(dim=1).values, conv.weight.detach().reshape(4, -1).sort(dim=1).values)


def test_a_parameter_moved_after_building_the_view_fails_loudly():
    conv = nn.Conv2d(3, 4, 3)
    _view = matrix_view(conv.weight)
    conv.weight.data = conv.weight.data.clone()  # what model.to(...) does after the optimizer is built
    with pytest.raises(RuntimeError, match="build the optimizer after moving the model"):
        conv(torch.randn(1, 3, 5, 5)).sum().backward()


# ----------------------------------------------------------------------------- HybridOptimizer


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
    assert hybrid.route_of_group(1) == "fallback"
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
    for (name, p), q, r in zip(model.named_parameters(), resumed.parameters(), fresh.parameters()):
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
    assert len(hybrid.param_groups) == 3 and hybrid.route_of_group(1) == "matrix"


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
