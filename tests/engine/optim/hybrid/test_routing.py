"""The routing policy: which parameters go to the matrix route (Muon) and which to the fallback, and why."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from hybrid_nets import TinyNet
from torch import nn

from visdet.engine.optim.config.optimizer_config import parse_optimizer_cfg
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.routing import DEFAULT_FALLBACK_KEYS, Route, route_parameters


def test_routing_of_a_small_conv_net_with_reasons():
    model = TinyNet()
    model.bn.bias.requires_grad_(False)  # frozen parameters are routed too: a hook may unfreeze them
    routes = route_parameters(model)
    assert list(routes) == [n for n, p in model.named_parameters()]
    assert routes["bn.bias"].route == "fallback"
    got = {name: r.route for name, r in routes.items()}
    assert got == {
        "stem.weight": "fallback",
        "stem.bias": "fallback",
        "bn.weight": "fallback",
        "conv.weight": "fallback",  # conv kernel, flatten_conv off
        "embed.weight": "fallback",
        "hidden.weight": "matrix",
        "hidden.bias": "fallback",
        "bn.bias": "fallback",
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
    assert Counter(r.route for r in routes.values()) == {"matrix": 1, "fallback": 9}  # bn.bias too


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
    assert routes["stem.weight"].route == "fallback" and routes["conv.weight"].route == "matrix"
    # A frozen hidden kernel has no 2-D view (its gradient hook needs requires_grad): the fallback takes it.
    model.conv.weight.requires_grad_(False)
    routes = route_parameters(model, flatten_conv=True)
    assert routes["conv.weight"].route == "fallback" and "frozen conv kernel" in routes["conv.weight"].reason


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
    """The config layer checks the routing options once; route_parameters takes them as given."""
    with pytest.raises(OptimizerConfigError, match=r"write \['fc_cls'\]"):
        parse_optimizer_cfg(dict(type="Muon", fallback_keys="fc_cls"))
    with pytest.raises(OptimizerConfigError, match="flatten_conv"):
        parse_optimizer_cfg(dict(type="Muon", flatten_conv="yes"))
    with pytest.raises(OptimizerConfigError, match="fallback_keys must be a list"):
        parse_optimizer_cfg(dict(type="Muon", fallback_keys=["fc_cls", ". "]))
    parsed = parse_optimizer_cfg(dict(type="Muon", fallback_keys=[".fcs."]))
    assert parsed.fallback_keys == ("fcs",) and parsed.flatten_conv is False
    assert parse_optimizer_cfg(dict(type="Muon")).fallback_keys is None  # None: DEFAULT_FALLBACK_KEYS


def test_norm_layers_are_named_in_the_reasons():
    model = nn.Sequential(nn.Linear(4, 4), nn.GroupNorm(2, 4), nn.RMSNorm(4), nn.Linear(4, 4))
    routes = route_parameters(model)
    assert routes["1.weight"].reason == routes["2.weight"].reason == "normalization parameter"
    assert routes["1.bias"].reason == "bias" and routes["0.weight"].route == "matrix"
