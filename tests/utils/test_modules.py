"""Module-tree facts: the norm-layer types, and every parameter with its owner module."""
from __future__ import annotations

import torch
from torch import nn

from visdet.utils.modules import NORM_TYPES, module_parameters, walk_modules


def test_norm_types_cover_every_torch_norm_layer():
    norms = [nn.BatchNorm2d(4), nn.SyncBatchNorm(4), nn.InstanceNorm2d(4, affine=True), nn.GroupNorm(2, 4),
             nn.LayerNorm(4), nn.LocalResponseNorm(2), nn.RMSNorm(4), nn.LazyBatchNorm1d()]
    assert all(isinstance(m, NORM_TYPES) for m in norms)
    assert not any(isinstance(m, NORM_TYPES) for m in (nn.Linear(2, 2), nn.Conv2d(2, 2, 1), nn.Embedding(2, 2)))


def shared_model() -> nn.Module:
    model = nn.Module()
    model.head = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model.aux = model.head[0]  # the same module under a second parent
    model.scale = nn.Parameter(torch.ones(1))
    return model


def test_module_parameters_are_named_parameters_with_their_owners():
    model = shared_model()
    sites = list(module_parameters(model))
    assert [s.name for s in sites] == [n for n, _ in model.named_parameters()]
    assert all(s.param is p for s, (_, p) in zip(sites, model.named_parameters()))
    by_name = {s.name: s for s in sites}
    assert by_name["head.1.weight"].module is model.head[1] and by_name["head.1.weight"].parent is model.head
    assert by_name["head.1.weight"].local == "weight" and by_name["head.1.weight"].prefix == "head.1"
    assert by_name["scale"].module is model and by_name["scale"].parent is None


def test_without_removing_duplicates_a_shared_module_comes_once_per_place():
    model = shared_model()
    assert [name for name, _, _ in walk_modules(model)] == ["", "head", "head.0", "head.1", "aux"]
    names = [s.name for s in module_parameters(model, remove_duplicate=False)]
    assert names == ["scale", "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "aux.weight", "aux.bias"]
