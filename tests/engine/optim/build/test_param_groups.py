"""paramwise_cfg rules: parity with mmengine's DefaultOptimWrapperConstructor, merging, precedence."""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.build.param_groups import plan_param_groups
from visdet.engine.optim.config.paramwise import RULES
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.modules import module_parameters

BASE_LR, BASE_WD = 0.01, 0.05


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)  # depth-wise
        self.gn = nn.GroupNorm(2, c)


class Detectorish(nn.Module):
    """Every kind of parameter the rules tell apart, under detector-like names."""

    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Conv2d(3, 4, 3, bias=False)
        self.backbone.layer1 = nn.Sequential(Block(4), Block(4))
        self.backbone.layer2 = nn.Sequential(Block(4))
        self.backbone.layer2[0].conv.weight.requires_grad_(False)  # frozen
        self.neck = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.head = nn.Module()
        self.head.embed = nn.Embedding(5, 8)
        self.head.fc_cls = nn.Linear(8, 3)
        self.head.fc_reg = nn.Linear(8, 4)
        self.scale = nn.Parameter(torch.ones(1))  # top-level parameter: mmengine's name is '.scale'
        if shared:  # the same module under a second parent, as weight-tied heads are
            self.aux = nn.Module()
            self.aux.reg = self.head.fc_reg


def effective(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per trainable parameter name: (lr, weight decay) the optimizer will use."""
    by_id = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lr = group.get("lr", optimizer.defaults["lr"])
            wd = group.get("weight_decay", optimizer.defaults.get("weight_decay", 0.0))
            by_id[id(p)] = (pytest.approx(lr, rel=1e-12), pytest.approx(wd, rel=1e-12))
    return {n: by_id[id(p)] for n, p in model.named_parameters() if p.requires_grad}


def build_both(paramwise_cfg: dict, optimizer: dict | None = None, shared: bool = False):
    torch.manual_seed(0)
    model = Detectorish(shared=shared)
    cfg = dict(optimizer=optimizer or dict(type="SGD", lr=BASE_LR, momentum=0.9, weight_decay=BASE_WD))
    theirs = DefaultOptimWrapperConstructor(copy.deepcopy(cfg), copy.deepcopy(paramwise_cfg))(model).optimizer
    ours = OptimWrapperConstructor(copy.deepcopy(cfg), copy.deepcopy(paramwise_cfg))(model).optimizer
    return model, ours, theirs


PARITY_CASES = {
    "no rules": {},
    "norm and bias decay": dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    "every type rule": dict(bias_lr_mult=2.0, bias_decay_mult=0.5, norm_decay_mult=0.0, dwconv_decay_mult=0.1,
                            flat_decay_mult=0.3),
    "nested custom keys, both mults": dict(
        norm_decay_mult=0.0,
        custom_keys={
            "backbone": dict(lr_mult=0.1, decay_mult=0.5),
            "backbone.layer1": dict(lr_mult=0.0, decay_mult=1.0),
            "head": dict(lr_mult=10.0, decay_mult=0.0),
        },
    ),
    "custom key on weights only": dict(bias_decay_mult=0.0, custom_keys={"conv.weight": dict(lr_mult=0.5)}),
    "top-level parameter": dict(custom_keys={".scale": dict(lr_mult=3.0, decay_mult=0.0)}),
    "absolute lr and weight decay in a custom key": dict(
        norm_decay_mult=0.0,
        custom_keys={"head": dict(lr=0.5, weight_decay=0.0), "neck": dict(lr_mult=2.0, weight_decay=0.3)},
    ),
    "equal-length keys": dict(
        custom_keys={"neck.0": dict(lr_mult=2.0, decay_mult=2.0), "neck.1": dict(lr_mult=4.0, decay_mult=0.0)}
    ),
}


@pytest.mark.parametrize("paramwise_cfg", PARITY_CASES.values(), ids=PARITY_CASES.keys())
def test_effective_lr_and_decay_equal_mmengine(paramwise_cfg):
    model, ours, theirs = build_both(paramwise_cfg)
    assert effective(ours, model) == effective(theirs, model)


def test_parity_with_adamw_and_shared_module_bypassed():
    cfg = dict(bypass_duplicate=True, norm_decay_mult=0.0, custom_keys={"fc_reg": dict(lr_mult=0.5, decay_mult=0.0)})
    model, ours, theirs = build_both(cfg, dict(type="AdamW", lr=1e-4, weight_decay=0.05), shared=True)
    assert effective(ours, model) == effective(theirs, model)


@pytest.mark.filterwarnings("ignore::visdet.engine.optim.config.arguments.OptimizerConfigWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mults=st.fixed_dictionaries(
        {},
        optional={
            k: st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])
            for k in ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult")
        },
    ),
    keys=st.dictionaries(
        st.sampled_from(["backbone", "layer1", "layer1.0", "bn", "neck", "head", "fc_cls", "embed", "dw", "scale"]),
        st.tuples(st.sampled_from([0.0, 0.1, 1.0, 5.0]), st.sampled_from([0.0, 0.5, 1.0])),
        max_size=4,
    ),
)
def test_parity_property(mults, keys):
    """Random rule sets: every parameter's lr and decay match mmengine's."""
    cfg = dict(mults)
    if keys:
        cfg["custom_keys"] = {k: dict(lr_mult=lr, decay_mult=d) for k, (lr, d) in keys.items()}
    model, ours, theirs = build_both(cfg)
    assert effective(ours, model) == effective(theirs, model)


def test_custom_lr_mult_keeps_type_decay_rules_mmengine_846():
    """A custom key setting only lr_mult must not undo norm/bias decay rules (mmengine drops them)."""
    cfg = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"backbone": dict(lr_mult=0.1)})
    model, ours, theirs = build_both(cfg)
    mine, mm = effective(ours, model), effective(theirs, model)
    bn_w, conv_b, conv_w = "backbone.layer1.0.bn.weight", "backbone.layer1.0.conv.bias", "backbone.layer1.0.conv.weight"
    assert mine[bn_w] == (BASE_LR * 0.1, 0.0)
    assert mine[conv_b] == (BASE_LR * 0.1, 0.0)
    assert mm[bn_w] == (BASE_LR * 0.1, BASE_WD)  # mmengine#846: decay rule silently dropped
    assert mine[conv_w] == mm[conv_w] == (BASE_LR * 0.1, BASE_WD)


def test_custom_decay_mult_only_keeps_bias_lr_mult():
    cfg = dict(bias_lr_mult=2.0, custom_keys={"neck": dict(decay_mult=0.0)})
    model, ours, _ = build_both(cfg)
    assert effective(ours, model)["neck.0.bias"] == (BASE_LR * 2.0, 0.0)


def test_groups_are_merged_and_keep_every_setting():
    cfg = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"backbone": dict(lr_mult=0.1)})
    model, ours, theirs = build_both(cfg)
    distinct = {(g["lr"], g["weight_decay"]) for g in ours.param_groups}
    assert len(ours.param_groups) == len(distinct) <= 4
    assert len(theirs.param_groups) == sum(p.requires_grad for p in model.parameters())  # mmengine#909
    assert sum(len(g["params"]) for g in ours.param_groups) == len(list(model.parameters()))  # frozen ones too
    plan = plan_param_groups(model, cfg, {"main": (BASE_LR, BASE_WD)})
    assert effective(ours, model) == {s.name: (s.lr, s.weight_decay) for s in plan.settings if s.param.requires_grad}
    order = [id(p) for g in ours.param_groups for p in g["params"]]
    assert len(order) == len(set(order))


def test_frozen_parameters_are_in_the_optimizer_with_their_rules():
    # A deliberate change from the old exclusion: as mmengine's model.parameters() path, a frozen
    # parameter is optimized, so a hook that unfreezes it later trains it.
    cfg = dict(custom_keys={"layer2": dict(lr_mult=0.1)})
    model, ours, _ = build_both(cfg)
    frozen = model.backbone.layer2[0].conv.weight
    group = next(g for g in ours.param_groups if any(p is frozen for p in g["params"]))
    assert group["lr"] == pytest.approx(BASE_LR * 0.1)  # the rules' setting, like any other parameter
    assert len(group["params"]) > 1  # merged with its trainable neighbours, not a group of its own
    plan = plan_param_groups(model, cfg, {"main": (BASE_LR, BASE_WD)})
    assert plan.frozen == ["backbone.layer2.0.conv.weight"]


def test_integer_parameters_are_left_out():
    model = nn.Linear(2, 2)
    model.index = nn.Parameter(torch.arange(3), requires_grad=False)  # can never have a gradient
    plan = plan_param_groups(model, {}, {"main": (BASE_LR, BASE_WD)})
    assert [s.name for s in plan.settings] == ["weight", "bias"] and plan.left_out == ["index"]


def test_a_fully_frozen_model_builds_and_trains_once_unfrozen():
    model = nn.Linear(3, 1).requires_grad_(False)
    wrapper = OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)))(model)
    before = model.weight.detach().clone()
    wrapper.step()  # no parameter has a gradient: nothing changes, nothing fails
    assert torch.equal(model.weight, before)
    model.requires_grad_(True)
    wrapper.update_params(model(torch.ones(2, 3)).sum())
    assert not torch.equal(model.weight, before)


def test_frozen_and_shared_parameters_are_logged(info_records):
    model = Detectorish(shared=True)
    OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)), dict(bypass_duplicate=True))(model)
    messages = [(r.levelname, r.getMessage()) for r in info_records]
    frozen = [m for level, m in messages if level == "INFO" and "requires_grad=False" in m]
    assert len(frozen) == 1 and "backbone.layer2.0.conv.weight" in frozen[0] and "in the optimizer" in frozen[0]
    shared = [m for level, m in messages if level == "WARNING" and "is duplicate" in m]
    assert shared and all("head.fc_reg" in m for m in shared)
    assert any(m.startswith("aux.reg.weight is duplicate") for m in shared)


def test_shared_parameters_with_conflicting_rules_need_bypass_duplicate():
    model = Detectorish(shared=True)
    cfg = dict(custom_keys={"aux": dict(lr_mult=0.5)})
    with pytest.raises(OptimizerConfigError, match="bypass_duplicate=True"):
        plan_param_groups(model, cfg, {"main": (BASE_LR, BASE_WD)})
    plan = plan_param_groups(model, {**cfg, "bypass_duplicate": True}, {"main": (BASE_LR, BASE_WD)})
    assert ("aux.reg.weight", "head.fc_reg.weight") in plan.duplicates
    # Same settings at both places: kept once, no error needed.
    assert plan_param_groups(model, {}, {"main": (BASE_LR, BASE_WD)}).duplicates


def test_custom_key_overrides_other_hyperparameters_per_group():
    model = Detectorish()
    ctor = OptimWrapperConstructor(
        dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.01)),
        dict(custom_keys={"head": dict(betas=(0.5, 0.9))}),
    )
    optimizer = ctor(model).optimizer
    head_ids = {id(p) for p in model.head.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in head_ids for p in group["params"]}
        assert len(in_head) == 1
        assert tuple(group["betas"]) == ((0.5, 0.9) if in_head.pop() else (0.9, 0.999))


def test_unmatched_custom_keys_warn_with_their_names():
    model = Detectorish()
    ctor = OptimWrapperConstructor(
        dict(optimizer=dict(type="SGD", lr=0.1)),
        dict(custom_keys={"backbone": dict(lr_mult=0.1), "bakbone.x": dict(lr_mult=2.0)}),
    )
    with pytest.warns(UserWarning, match=r"'bakbone.x' matched no parameter"):
        ctor(model)


def test_custom_key_always_shadowed_by_a_longer_one_is_reported():
    ctor = OptimWrapperConstructor(
        dict(optimizer=dict(type="SGD", lr=0.1)),
        dict(custom_keys={"backbone": dict(lr_mult=0.1), "layer1": dict(lr_mult=2.0)}),
    )
    with pytest.warns(UserWarning, match=r"'layer1' is always overridden by the longer key 'backbone'"):
        ctor(Detectorish())


class DeformConv2d(nn.Module):
    """Named as mmcv's (deformable convolutions are told by class name); its offsets come from ``conv_offset``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c))
        self.conv_offset = nn.Conv2d(c, 18, 3, padding=1)


def with_dcn() -> nn.Module:
    model = Detectorish()
    model.neck.append(DeformConv2d(8))
    return model


def test_dcn_offset_lr_mult_scales_the_offset_convolution_and_no_bias_rule_reaches_it():
    cfg = dict(dcn_offset_lr_mult=0.1, bias_lr_mult=2.0, bias_decay_mult=0.0, flat_decay_mult=0.5)
    plan = plan_param_groups(with_dcn(), cfg, {"main": (BASE_LR, BASE_WD)})
    got = {s.name: (s.lr, s.weight_decay, s.lr_rule, s.decay_rule) for s in plan.settings}
    assert got["neck.2.conv_offset.weight"] == (BASE_LR * 0.1, BASE_WD, "dcn_offset_lr_mult", "base")
    assert got["neck.2.conv_offset.bias"] == (BASE_LR * 0.1, BASE_WD, "dcn_offset_lr_mult", "base")
    assert got["neck.2.bias"] == (BASE_LR * 2.0, 0.0, "bias_lr_mult", "bias_decay_mult")  # the DCN's own bias


@pytest.mark.parametrize("rule", RULES, ids=[r.key for r in RULES])
def test_every_rule_in_the_table_changes_the_parameters_it_applies_to(rule):
    """A rule added to config.paramwise.RULES is applied by the planner, to its parameters only."""
    model = with_dcn()
    plan = plan_param_groups(model, {rule.key: 0.5}, {"main": (BASE_LR, BASE_WD)})
    sites = {site.name: site for site in module_parameters(model)}
    for s in plan.settings:
        chosen = s.lr_rule if rule.setting == "lr" else s.decay_rule
        applies = rule.applies(sites[s.name])
        assert chosen == (rule.key if applies else "base"), s.name
        scaled = (BASE_LR * 0.5, BASE_WD) if rule.setting == "lr" else (BASE_LR, BASE_WD * 0.5)
        assert (s.lr, s.weight_decay) == (scaled if applies else (BASE_LR, BASE_WD)), s.name
    assert any(rule.applies(site) for site in sites.values()), f"no parameter of the test model has {rule.applies_to}"


def test_norm_decay_mult_covers_rmsnorm_which_mmengines_list_predates():
    """docs/optim_wrapper.md: norm_decay_mult reaches RMSNorm weights too (one norm list, visdet/utils/modules.py)."""
    model = nn.Sequential(nn.Linear(4, 4), nn.RMSNorm(4), nn.Linear(4, 2))
    plan = plan_param_groups(model, dict(norm_decay_mult=0.0), {"main": (BASE_LR, BASE_WD)})
    decay = {s.name: s.weight_decay for s in plan.settings}
    assert decay["1.weight"] == 0.0
    assert decay["0.weight"] == decay["2.weight"] == BASE_WD
