"""Layer-wise lr decay on the real detector: exact lrs per depth, composed with custom_keys, Muon and schedulers."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
from mmengine.registry import init_default_scope
from torch import nn

from testutils import REPO
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError

LR = 3e-4


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    """configs/faster_rcnn_r18_small.py's Faster R-CNN (ResNet-18: stem, 4 stages of 2 blocks, FPN, heads)."""
    init_default_scope("visdet")
    from visdet.registry import MODELS

    return MODELS.build(Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py")).model)


def _plan(model: nn.Module, paramwise_cfg: dict, optimizer: dict | None = None):
    cfg = dict(optimizer=optimizer or dict(type="AdamW", lr=LR, weight_decay=0.05))
    return OptimWrapperConstructor(cfg, paramwise_cfg).plan(model)


def _lrs(plan) -> dict[str, float]:
    return {s.name: s.lr for s in plan.param_plan.settings}


def test_layer_wise_decay_gives_each_resnet_block_its_depth_and_heads_the_base_lr(detector):
    lrs = _lrs(_plan(detector, dict(layer_decay=0.5)))
    # ResNet-18: stem 0, blocks 1..8, neck and heads 9; max_layer_id 10, scale 0.5 ** (9 - id)
    assert lrs["backbone.conv1.weight"] == pytest.approx(LR * 0.5 ** 9)
    assert lrs["backbone.bn1.bias"] == pytest.approx(LR * 0.5 ** 9)
    assert lrs["backbone.layer1.0.conv1.weight"] == pytest.approx(LR * 0.5 ** 8)
    assert lrs["backbone.layer1.1.conv2.weight"] == pytest.approx(LR * 0.5 ** 7)
    assert lrs["backbone.layer2.0.downsample.0.weight"] == pytest.approx(LR * 0.5 ** 6)
    assert lrs["backbone.layer4.1.bn2.weight"] == pytest.approx(LR * 0.5)
    for name in ("neck.lateral_convs.0.weight", "rpn_head.rpn_cls.weight", "roi_head.bbox_head.fc_cls.bias"):
        assert lrs[name] == LR


def test_stage_wise_decay_orders_stem_stages_and_heads(detector):
    plan = _plan(detector, dict(layer_decay=0.8, layer_decay_type="stage_wise"))
    lrs = _lrs(plan)
    stem, *stages = (lrs["backbone.conv1.weight"], *(lrs[f"backbone.layer{i}.0.conv1.weight"] for i in range(1, 5)))
    head = lrs["roi_head.bbox_head.fc_reg.weight"]
    assert stem < stages[0] < stages[1] < stages[2] < stages[3] < head == LR
    assert [stem, *stages] == pytest.approx([LR * 0.8 ** k for k in (5, 4, 3, 2, 1)])
    # every block of a stage shares its lr, and parameters with equal settings share one group
    assert lrs["backbone.layer3.1.conv2.weight"] == lrs["backbone.layer3.0.conv1.weight"]
    groups = plan.param_plan.groups()
    assert len(groups) == len({(g["lr"], g.get("weight_decay")) for g in groups}) == 6
    by_name = {s.name: s for s in plan.param_plan.settings}
    assert by_name["backbone.conv1.weight"].layer_id == 0 and by_name["neck.fpn_convs.0.weight"].layer_id == 5


def test_custom_keys_lr_mult_multiplies_with_the_layer_scale_and_absolute_lr_wins(detector):
    lrs = _lrs(_plan(detector, dict(layer_decay=0.5, layer_decay_type="stage_wise", custom_keys={
        "backbone.layer4": dict(lr_mult=0.1), "rpn_head": dict(lr_mult=2.0), "backbone.layer1": dict(lr=1e-5)})))
    assert lrs["backbone.layer4.0.conv1.weight"] == pytest.approx(LR * 0.1 * 0.5)
    assert lrs["rpn_head.rpn_conv.0.weight"] == pytest.approx(LR * 2.0)
    assert lrs["backbone.layer1.0.conv1.weight"] == 1e-5


def test_muon_hybrid_decays_each_routes_own_base_lr(detector):
    plan = _plan(detector, dict(layer_decay=0.5, layer_decay_type="stage_wise"), dict(
        type="Muon", lr=0.02, weight_decay=0.01, flatten_conv=True,
        fallback=dict(type="AdamW", lr=1e-3, weight_decay=0.05)))
    by_name = {s.name: s for s in plan.param_plan.settings}
    muon, adamw = by_name["backbone.layer2.0.conv1.weight"], by_name["backbone.layer2.0.bn1.weight"]
    assert muon.route != adamw.route
    assert muon.lr == pytest.approx(0.02 * 0.5 ** 3) and adamw.lr == pytest.approx(1e-3 * 0.5 ** 3)
    assert by_name["roi_head.bbox_head.fc_cls.bias"].lr == 1e-3


@pytest.mark.parametrize("scheduler", [
    lambda ow: LinearLR(ow, start_factor=0.1, by_epoch=False, begin=0, end=10),
    lambda ow: CosineAnnealingLR(ow, T_max=10, by_epoch=False),
])
def test_mmengine_schedulers_keep_the_decayed_ratios(detector, scheduler):
    # timm#2532: a scale left for a scheduler to apply is lost under another one; baked into each group's
    # lr, every mmengine scheduler (which scales each group from its own initial lr) keeps it.
    constructor = OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
                                          dict(layer_decay=0.5, layer_decay_type="stage_wise"))
    wrapper = constructor(detector)
    sched = scheduler(wrapper)
    initial = [g["initial_lr"] for g in wrapper.optimizer.param_groups]
    assert sorted(initial) == pytest.approx([0.1 * 0.5 ** k for k in (5, 4, 3, 2, 1, 0)])
    for _ in range(4):
        wrapper.optimizer.step()
        sched.step()
    lrs = [g["lr"] for g in wrapper.optimizer.param_groups]
    head = max(lrs)
    assert head < 0.1  # the scheduler did move the lrs
    assert [lr / head for lr in lrs] == pytest.approx([i / max(initial) for i in initial])


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)


@pytest.mark.parametrize("paramwise_cfg,key,words", [
    (dict(layer_decay=0.0), "paramwise_cfg.layer_decay", "(0, 1]"),
    (dict(layer_decay=1.5), "paramwise_cfg.layer_decay", "(0, 1]"),
    (dict(layer_decay=0.7, layer_decay_type="block_wise"), "paramwise_cfg.layer_decay_type", "stage_wise"),
    (dict(layer_decay_type="stage_wise"), "paramwise_cfg.layer_decay", "is not"),
    (dict(layer_decay=0.7, layer_decay_num_layers=0), "paramwise_cfg.layer_decay_num_layers", "positive"),
])
def test_bad_values_are_refused_when_the_constructor_is_built(paramwise_cfg, key, words):
    with pytest.raises(OptimizerConfigError, match=key) as info:
        OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)), paramwise_cfg)
    assert words in str(info.value)


def test_a_backbone_without_depths_is_refused_at_build_naming_the_key():
    constructor = OptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)), dict(layer_decay=0.7))
    with pytest.raises(OptimizerConfigError, match=r"paramwise_cfg\.layer_decay: .*Linear defines no get_layer_depth"):
        constructor(_Plain())


def test_num_layers_must_match_the_backbone(detector):
    with pytest.raises(OptimizerConfigError, match=r"layer_decay_num_layers: is 12, .* has 8 layers .* set 8"):
        _plan(detector, dict(layer_decay=0.7, layer_decay_num_layers=12))
    assert _plan(detector, dict(layer_decay=0.7, layer_decay_num_layers=8)).param_plan.settings


class _VitLike(nn.Module):
    """A backbone with mmpretrain's two-argument get_layer_depth (layer-wise only)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Linear(4, 4)
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        max_layer_id = len(self.layers) + 2
        name = param_name[len(prefix):]
        if not param_name.startswith(prefix):
            return max_layer_id - 1, max_layer_id
        if name.startswith("layers."):
            return int(name.split(".")[1]) + 1, max_layer_id
        return 0, max_layer_id


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _VitLike()
        self.head = nn.Linear(4, 2)


def test_any_backbone_with_mmpretrains_get_layer_depth_is_decayed():
    lrs = _lrs(_plan(_Classifier(), dict(layer_decay=0.5)))
    assert lrs["backbone.patch_embed.weight"] == pytest.approx(LR * 0.5 ** 4)
    assert lrs["backbone.layers.2.bias"] == pytest.approx(LR * 0.5)
    assert lrs["head.weight"] == LR
    with pytest.raises(OptimizerConfigError, match="layer_decay_type: .*takes no decay_type"):
        _plan(_Classifier(), dict(layer_decay=0.5, layer_decay_type="stage_wise"))


def test_the_optimizer_steps_with_the_decayed_groups(detector):
    wrapper = OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=LR, weight_decay=0.05)),
                                      dict(layer_decay=0.9))(detector)
    stem = detector.backbone.conv1.weight
    group = next(g for g in wrapper.optimizer.param_groups if any(p is stem for p in g["params"]))
    assert group["lr"] == pytest.approx(LR * 0.9 ** 9)
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)


def test_a_part_planned_under_its_prefix_takes_its_own_depths(detector):
    # mmengine's add_params(prefix=...): a subclass plans the backbone alone, its names prefixed
    from visdet.engine.optim.build.param_groups import plan_param_groups

    plan = plan_param_groups(detector.backbone, dict(layer_decay=0.5), {"main": (LR, None)}, prefix="backbone")
    lrs = {s.name: s.lr for s in plan.settings}
    assert lrs["backbone.conv1.weight"] == pytest.approx(LR * 0.5 ** 9)
    assert lrs["backbone.layer4.1.conv2.weight"] == pytest.approx(LR * 0.5)
