"""Subclassing the constructor the mmengine way: its attributes, the add_params hook, declared paramwise keys."""
from __future__ import annotations

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer
from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

LR, WD = 0.01, 1e-4


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 2)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class Conv1LrConstructor(OptimWrapperConstructor):
    """mmengine's test constructor, written as MMDetection writes its own: its own groups in add_params."""

    extra_paramwise_keys = ("conv1_lr_mult",)

    def add_params(self, params, module, prefix="", **kwargs):
        mult = self.paramwise_cfg.get("conv1_lr_mult", 1.0)
        for name, param in module.named_parameters():
            group = {"params": [param]}
            if name.startswith("conv1"):
                group["lr"] = self.base_lr * mult
            params.append(group)


def _cfg(optimizer: dict | None = None, **paramwise) -> dict:
    return dict(optimizer=optimizer or dict(type="SGD", lr=LR, momentum=0.9, weight_decay=WD),
                constructor="Conv1LrConstructor", paramwise_cfg=paramwise)


def _lr_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_mmengine_style_subclass_with_its_own_key_builds_through_mmengine():
    model = ToyNet()
    with DefaultScope.overwrite_default_scope("visdet"):
        wrapper = build_optim_wrapper(model, _cfg(conv1_lr_mult=5))
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert _lr_of(optimizer, model.conv1.weight) == _lr_of(optimizer, model.conv1.bias) == pytest.approx(LR * 5)
    assert _lr_of(optimizer, model.fc.weight) == LR
    assert len(optimizer.param_groups) == 2  # mmengine would make 8, one per parameter (mmengine#909)
    assert all(g["weight_decay"] == WD and g["momentum"] == 0.9 for g in optimizer.param_groups)
    assert optimizer.defaults["fused"] or optimizer.defaults["foreach"]  # still chosen for the subclass's groups
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_mmengine_attributes():
    ctor = Conv1LrConstructor(dict(optimizer=dict(type="SGD", lr=LR, weight_decay=WD)), dict(conv1_lr_mult=2))
    assert ctor.optimizer_cfg == dict(type="SGD", lr=LR, weight_decay=WD)
    assert (ctor.base_lr, ctor.base_wd, ctor.paramwise_cfg) == (LR, WD, dict(conv1_lr_mult=2))
    assert ctor.optim_wrapper_cfg["type"] == "OptimWrapper"
    assert OptimWrapperConstructor(dict(optimizer=dict(type="Adam"))).base_lr is None  # as mmengine: only what is set


def test_a_misspelt_visdet_key_still_fails_next_to_a_declared_one():
    with pytest.raises(OptimizerConfigError, match=r"unknown key 'norm_decay_mul'; did you mean 'norm_decay_mult'"):
        Conv1LrConstructor(dict(optimizer=dict(type="SGD", lr=LR, weight_decay=WD)),
                           dict(conv1_lr_mult=5, norm_decay_mul=0.0))


def test_an_undeclared_subclass_key_fails_with_did_you_mean():
    class Undeclared(OptimWrapperConstructor):
        pass

    with pytest.raises(OptimizerConfigError, match=r"paramwise_cfg: unknown key 'conv1_lr_mult'"):
        Undeclared(dict(optimizer=dict(type="SGD", lr=LR)), dict(conv1_lr_mult=5))
    with pytest.raises(OptimizerConfigError, match=r"unknown key 'conv1_lr_mul'; did you mean 'conv1_lr_mult'"):
        Conv1LrConstructor(dict(optimizer=dict(type="SGD", lr=LR)), dict(conv1_lr_mul=5))


def test_declaring_a_key_visdet_already_means_is_refused():
    class Clash(OptimWrapperConstructor):
        extra_paramwise_keys = ("norm_decay_mult",)

    with pytest.raises(ValueError, match="already mean visdet's rules"):
        Clash(dict(optimizer=dict(type="SGD", lr=LR)))


def test_super_add_params_with_a_prefix_applies_visdet_rules_under_that_name():
    class BackboneOnly(OptimWrapperConstructor):
        def add_params(self, params, module, prefix="", **kwargs):
            super().add_params(params, module.body, prefix="body")  # the head is left out on purpose

    model = nn.Module()
    model.body, model.head = ToyNet(), nn.Linear(2, 2)
    ctor = BackboneOnly(dict(optimizer=dict(type="SGD", lr=LR, weight_decay=WD)),
                        dict(norm_decay_mult=0.0, custom_keys={"body.conv2": dict(lr_mult=0.1)}))
    optimizer = ctor(model).optimizer
    ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert ids == {id(p) for p in model.body.parameters()}
    assert _lr_of(optimizer, model.body.conv2.weight) == pytest.approx(LR * 0.1)  # matched with the prefix
    bn_group = next(g for g in optimizer.param_groups if any(p is model.body.bn.weight for p in g["params"]))
    assert bn_group["weight_decay"] == 0.0
    plan = ctor.plan(model)
    assert {s.lr_rule for s in plan.param_plan.settings} == {"BackboneOnly.add_params"}


def test_subclass_groups_keep_the_muon_routes():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    ctor = Conv1LrConstructor(dict(optimizer=dict(type="Muon", lr=0.02, fallback=dict(type="AdamW", lr=1e-3))))
    optimizer = ctor(model).optimizer
    assert isinstance(optimizer, HybridOptimizer)
    matrix = {id(p) for g in optimizer.optimizers["matrix"].param_groups for p in g["params"]}
    assert id(model[2].weight) in matrix and id(model[0].bias) not in matrix
    fallback_lrs = {g["lr"] for g in optimizer.optimizers["fallback"].param_groups}
    assert fallback_lrs == {1e-3}  # a group without lr takes its route's lr


def test_a_parameter_in_two_subclass_groups_is_a_config_error():
    class Twice(OptimWrapperConstructor):
        def add_params(self, params, module, prefix="", **kwargs):
            params += [{"params": [module.weight]}, {"params": [module.weight], "lr": 1.0}]

    with pytest.raises(OptimizerConfigError, match=r"Twice.add_params put parameter 'weight' in two groups"):
        Twice(dict(optimizer=dict(type="SGD", lr=LR)))(nn.Linear(2, 2))


def test_a_subclass_that_changes_optimizer_cfg_is_checked_again():
    class Retype(OptimWrapperConstructor):
        def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
            super().__init__(optim_wrapper_cfg, paramwise_cfg)
            self.optimizer_cfg["type"] = "AdamWW"

    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper\.optimizer\.type.*'AdamW'"):
        Retype(dict(optimizer=dict(type="SGD", lr=LR)))(nn.Linear(2, 2))
