"""Per-module optimizer types: custom_keys[key].optimizer, checked at build time like optim_wrapper.optimizer."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.optim.scheduler import MultiStepLR
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.build.report import format_plan
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer

KEY = "optim_wrapper.paramwise_cfg.custom_keys['backbone']"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 2)


def _ctor(rule: dict, optimizer: dict | None = None, **paramwise) -> OptimWrapperConstructor:
    return OptimWrapperConstructor(
        dict(optimizer=optimizer or dict(type="AdamW", lr=1e-3, weight_decay=0.05)),
        dict(custom_keys={"backbone": rule}, **paramwise),
    )


@pytest.mark.parametrize("rule, where, expected", [
    (dict(optimizer=dict(type="SDG")), f"{KEY}.optimizer.type", "did you mean 'SGD'"),
    (dict(optimizer=dict(type="SGD", momentun=0.9)), f"{KEY}.optimizer", "did you mean 'momentum'"),
    (dict(optimizer=dict(type="SGD", lr=-1.0)), f"{KEY}.optimizer", "lr"),
    (dict(optimizer=dict(type="Muon", lr=0.02)), f"{KEY}.optimizer.type", "cannot be a per-module optimizer"),
    (dict(optimizer=dict(type="SGD"), betas=(0.9, 0.99)), KEY, "unknown key 'betas'"),  # SGD has no betas
    (dict(optimizer=dict(type="SGD", lr=0.1), decay_mult=0.5), "optim_wrapper.paramwise_cfg",
     rf"{KEY}.optimizer sets no weight_decay"),
    (dict(optimizer="SGD"), f"{KEY}.optimizer", "must be a dict"),
])
def test_a_bad_nested_optimizer_names_its_key(rule, where, expected):
    with pytest.raises(OptimizerConfigError) as info:
        _ctor(rule)
    assert str(info.value).startswith(where) and expected in str(info.value), str(info.value)


def test_a_key_that_names_a_main_route_is_refused():
    with pytest.raises(OptimizerConfigError, match=r"custom_keys\['main'\].*taken by the main optimizer"):
        OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)),
                                dict(custom_keys={"main": dict(optimizer=dict(type="SGD"))}))


def test_routes_lr_multipliers_scheduler_and_report():
    model = Net()
    rule = dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4), lr_mult=0.5)
    cfg_rule = copy.deepcopy(rule)
    ctor = _ctor(rule, norm_decay_mult=0.0)
    wrapper = ctor(model)
    assert rule == cfg_rule  # read only
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, HybridOptimizer) and list(optimizer.optimizers) == ["main", "backbone"]
    sgd = optimizer.optimizers["backbone"]
    assert {id(p) for g in sgd.param_groups for p in g["params"]} == {id(p) for p in model.backbone.parameters()}
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert by_param[id(model.backbone[0].weight)]["lr"] == pytest.approx(0.05)  # the route's lr x lr_mult
    assert by_param[id(model.backbone[1].weight)]["weight_decay"] == 0.0  # norm_decay_mult on the route's decay
    assert by_param[id(model.backbone[0].weight)]["weight_decay"] == 1e-4
    assert by_param[id(model.head.weight)]["lr"] == 1e-3 and by_param[id(model.head.weight)]["weight_decay"] == 0.05
    # A scheduler sees one optimizer: both routes decay.
    scheduler = MultiStepLR(wrapper, milestones=[1], gamma=0.1)
    model.head(model.backbone(torch.ones(2, 4))).sum().backward()
    wrapper.step()
    scheduler.step()
    assert by_param[id(model.backbone[0].weight)]["lr"] == pytest.approx(0.005)
    assert by_param[id(model.head.weight)]["lr"] == pytest.approx(1e-4)
    assert sgd.state[model.backbone[0].weight]["momentum_buffer"] is not None
    report = format_plan(ctor.plan(model))
    line = next(row for row in report.splitlines() if row.startswith("backbone.0.weight"))
    assert "SGD" in line and "custom_keys['backbone'].optimizer" in line
    assert "AdamW" in next(row for row in report.splitlines() if row.startswith("head.weight"))


def test_a_longer_key_without_optimizer_takes_its_part_back_to_the_main_optimizer():
    model = Net()
    ctor = OptimWrapperConstructor(
        dict(optimizer=dict(type="AdamW", lr=1e-3)),
        dict(custom_keys={"backbone": dict(optimizer=dict(type="SGD", lr=0.1)), "backbone.1": dict(lr_mult=2.0)}),
    )
    optimizer = ctor(model).optimizer
    main = {id(p) for g in optimizer.optimizers["main"].param_groups for p in g["params"]}
    assert id(model.backbone[1].weight) in main and id(model.backbone[0].weight) not in main  # the longest key wins


def test_the_preflight_check_refuses_a_bad_nested_optimizer_before_training():
    from mmengine.config import Config

    from testutils import REPO
    from visdet.engine.preflight import check_config
    from visdet.errors import ConfigError

    cfg = Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py"))
    cfg.optim_wrapper.paramwise_cfg.custom_keys = {"backbone": dict(optimizer=dict(type="SGD", momentun=0.9))}
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value).startswith(f"{KEY}.optimizer: SGD got an unknown argument 'momentun'; did you mean")
    cfg.optim_wrapper.paramwise_cfg.custom_keys = {"backbone": dict(optimizer=dict(type="SGD", momentum=0.9))}
    check_config(cfg)


@pytest.mark.parametrize("strategy", ["DeepSpeedStrategy", "FSDPStrategy"])
def test_strategies_that_need_one_optimizer_refuse_per_module_optimizers(strategy):
    from visdet.engine.strategies.checks import check_strategy_config
    from visdet.errors import ConfigError

    cfg = dict(runner_type="FlexibleRunner", strategy=dict(type=strategy),
               optim_wrapper=dict(optimizer=dict(type="AdamW", lr=1e-3),
                                  paramwise_cfg=dict(custom_keys={"backbone": dict(optimizer=dict(type="SGD"))})))
    with pytest.raises(ConfigError) as info:
        check_strategy_config(cfg)
    assert str(info.value).startswith(f"{KEY}.optimizer: a per-module optimizer cannot run under {strategy}")
