"""A model's ``no_weight_decay()`` (timm's convention): names, prefixes and patterns get weight decay 0."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from testutils import REPO
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.build.report import format_plan
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.models.backbones.resnet import ResNet
from visdet.registry import MODELS


class _Vit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.rel_pos = nn.ModuleDict({"table": nn.Embedding(3, 8)})
        self.head = nn.Linear(8, 2)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "rel_pos", "blocks.*.bias"}  # a name, a module prefix, a pattern


def _settings(model: nn.Module, paramwise_cfg: dict | None = None, weight_decay: float | None = 0.05):
    optimizer = dict(type="AdamW", lr=1e-3) | ({} if weight_decay is None else dict(weight_decay=weight_decay))
    plan = OptimWrapperConstructor(dict(optimizer=optimizer), paramwise_cfg).plan(model)
    return plan, {s.name: s for s in plan.param_plan.settings}


def test_names_prefixes_and_patterns_of_no_weight_decay_get_zero_decay():
    plan, by_name = _settings(_Vit())
    for name in ("pos_embed", "cls_token", "rel_pos.table.weight", "blocks.0.bias", "blocks.1.bias"):
        assert by_name[name].weight_decay == 0.0 and by_name[name].decay_rule == "no_weight_decay()", name
    for name in ("blocks.0.weight", "head.weight", "head.bias"):
        assert by_name[name].weight_decay == 0.05, name
    report = format_plan(plan)
    assert "no_weight_decay()" in next(line for line in report.splitlines() if line.startswith("pos_embed"))


def test_a_custom_keys_decay_mult_wins_over_the_models_default():
    _, by_name = _settings(_Vit(), dict(custom_keys={"pos_embed": dict(decay_mult=0.5)}))
    assert by_name["pos_embed"].weight_decay == pytest.approx(0.025)
    assert by_name["cls_token"].weight_decay == 0.0


def test_without_a_configured_weight_decay_nothing_is_set():
    _, by_name = _settings(_Vit(), weight_decay=None)
    assert by_name["pos_embed"].weight_decay is None


def test_a_bad_return_value_is_refused():
    class Bad(_Vit):
        def no_weight_decay(self) -> str:  # type: ignore[override]
            return "pos_embed"

    with pytest.raises(OptimizerConfigError, match="must return a set of parameter names"):
        _settings(Bad())


@MODELS.register_module(force=True)
class NoDecayStemResNet(ResNet):
    """visdet's ResNet naming its stem and first stage as not to be decayed."""

    def no_weight_decay(self) -> set[str]:
        return {"conv1", "layer1"}


def test_the_detector_honours_its_backbones_no_weight_decay():
    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py"))
    cfg.model.backbone.type = "NoDecayStemResNet"
    detector = MODELS.build(cfg.model)
    plan, by_name = _settings(detector)
    assert by_name["backbone.conv1.weight"].weight_decay == 0.0
    assert by_name["backbone.layer1.1.conv2.weight"].decay_rule == "no_weight_decay()"
    assert by_name["backbone.layer2.0.conv1.weight"].weight_decay == 0.05
    assert by_name["neck.lateral_convs.0.weight"].weight_decay == 0.05
    wrapper = OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05)))(detector)
    group = next(g for g in wrapper.optimizer.param_groups
                 if any(p is detector.backbone.conv1.weight for p in g["params"]))
    assert group["weight_decay"] == 0.0
