"""pytorch-optimizer's Muon family through visdet's constructor: the use_muon layout (build/muon_layout.py).

The layout is planned on the real small detector (configs/faster_rcnn_r18_small.py) with the shipped
configs/faster_rcnn_normuon.py, and one step of that config moves both parts; every class of the family
trains a small net through the constructor, with its state and a scheduler; DistributedMuon and DeMo
train under two processes; the refusals say what to change.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

from testutils import REPO, SmallNet, free_port
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.build.muon_layout import flag_groups
from visdet.engine.optim.build.report import format_plan, plan_for
from visdet.engine.optim.catalog.availability import NEED_TEXT, assume_met, unmet_needs
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.strategies import StrategyConfigError, check_strategy_config
from visdet.structures import DetDataSample

FAMILY = ("pytorch_optimizer_Muon", "AdaMuon", "NorMuon", "MuonClip", "AdaGO")
NORMUON = REPO / "configs/faster_rcnn_normuon.py"


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    from visdet.registry import MODELS

    init_default_scope("visdet")
    torch.manual_seed(0)
    return MODELS.build(Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py")).model)


def _shipped() -> dict:
    return Config.fromfile(str(NORMUON)).optim_wrapper.to_dict()


def test_the_shipped_config_lays_out_the_detector_by_the_muon_routing(detector):
    plan = plan_for(detector, _shipped())
    by_name = {s.name: s for s in plan.param_plan.settings}
    muon = {n for n, s in by_name.items() if s.overrides.get("use_muon") is True}
    adamw = {n for n, s in by_name.items() if s.overrides.get("use_muon") is False}
    assert muon | adamw == set(by_name) and not muon & adamw  # every parameter is in exactly one part
    # Hidden conv kernels and the box head's fully connected layers: the Muon update at lr, weight_decay.
    for name in ("backbone.layer1.0.conv1.weight", "neck.fpn_convs.0.weight", "rpn_head.rpn_conv.0.weight",
                 "roi_head.bbox_head.shared_fcs.0.weight"):
        assert name in muon and (by_name[name].lr, by_name[name].weight_decay) == (0.02, 0.01), name
    # The stem, the output layers, norms and biases: the AdamW part at adamw_lr, adamw_wd, with the config's
    # paramwise rules (norm_decay_mult=0, bias_decay_mult=0) applied to that part's own base.
    for name, decay in (("backbone.conv1.weight", 0.05), ("rpn_head.rpn_cls.weight", 0.05),
                        ("roi_head.bbox_head.fc_cls.weight", 0.05), ("backbone.bn1.weight", 0.0),
                        ("roi_head.bbox_head.fc_reg.bias", 0.0)):
        assert name in adamw and (by_name[name].lr, by_name[name].weight_decay) == (3e-4, decay), name
    # The report tells which part each parameter takes and why, and the groups carry the flag.
    report = format_plan(plan)
    assert "NorMuon (AdamW part)" in report and "use_muon=True" in report and "use_muon=False" in report
    assert "first conv layer (the stem" in report and "prediction head (matches fallback key 'fc_cls')" in report
    groups = plan.param_plan.groups()
    assert len(groups) == 3  # merged: one Muon group, two AdamW ones (decay 0.05 and 0)


def test_paramwise_rules_scale_each_parts_own_base(detector):
    cfg = _shipped()
    cfg["paramwise_cfg"] = dict(custom_keys={"roi_head": dict(lr_mult=0.5), "backbone.conv1": dict(decay_mult=2.0)})
    by_name = {s.name: s for s in plan_for(detector, cfg).param_plan.settings}
    assert by_name["roi_head.bbox_head.shared_fcs.0.weight"].lr == pytest.approx(0.01)  # Muon part: 0.02 x 0.5
    assert by_name["roi_head.bbox_head.fc_cls.weight"].lr == pytest.approx(1.5e-4)  # AdamW part: 3e-4 x 0.5
    assert by_name["backbone.conv1.weight"].weight_decay == pytest.approx(0.1)  # adamw_wd 0.05 x 2


def test_one_step_of_the_shipped_config_moves_both_parts_of_the_detector(detector):
    model = copy.deepcopy(detector)
    wrapper = build_optim_wrapper(model, _shipped())
    optimizer = wrapper.optimizer
    assert type(optimizer).__name__ == "NorMuon"
    assert sorted({g["use_muon"] for g in optimizer.param_groups}) == [False, True]
    LinearLR(wrapper, start_factor=0.1, by_epoch=False, begin=0, end=10)  # mmengine's base-lr group needs an lr
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = _loss(model)
    assert math.isfinite(loss.item())
    wrapper.update_params(loss)
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert {"backbone.layer2.0.conv1.weight", "roi_head.bbox_head.shared_fcs.1.weight",  # the Muon part
            "backbone.conv1.weight", "roi_head.bbox_head.fc_cls.weight", "backbone.bn1.bias"} <= moved


def _loss(model: nn.Module) -> torch.Tensor:
    """The detector's loss on one 64x64 noise image with two bright boxes."""
    boxes, hw = [[6.0, 8.0, 30.0, 34.0], [36.0, 16.0, 60.0, 58.0]], (64, 64)
    img = torch.randint(0, 60, (3, *hw), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for x1, y1, x2, y2 in boxes:
        img[:, int(y1):int(y2), int(x1):int(x2)] = 200
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0), flip=False))
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor([0, 2]))
    torch.manual_seed(1)
    model.train()
    losses = model(**model.data_preprocessor(dict(inputs=[img], data_samples=[sample]), True), mode="loss")
    return sum(v for k, v in losses.items() if "loss" in k)


def _train(wrapper, net: nn.Module, steps: int) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", FAMILY)
def test_every_class_of_the_family_trains_through_the_constructor_and_resumes(name):
    torch.manual_seed(0)
    net = SmallNet()
    cfg = dict(optimizer=dict(type=name, lr=0.02, weight_decay=0.01, adamw_lr=1e-2, adamw_wd=0.01),
               paramwise_cfg=dict(norm_decay_mult=0.0))
    wrapper = OptimWrapperConstructor(cfg)(net)
    flags = {id(p): g["use_muon"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    assert flags[id(net.fc1.weight)] and not flags[id(net.fc1.bias)] and not flags[id(net.bn.weight)]
    assert not flags[id(net.conv.weight)]  # the first conv layer: the stem stays on AdamW
    losses = _train(wrapper, net, 8)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    # A checkpoint's optimizer state continues exactly in a rebuilt wrapper.
    copy_net = copy.deepcopy(net)
    resumed = OptimWrapperConstructor(cfg)(copy_net)
    resumed.load_state_dict(copy.deepcopy(wrapper.state_dict()))
    _train(wrapper, net, 2)
    _train(resumed, copy_net, 2)
    for a, b in zip(net.parameters(), copy_net.parameters()):
        assert torch.equal(a, b)


def test_spectral_sphere_takes_the_matrices_and_a_fallback_the_rest():
    torch.manual_seed(0)
    net = SmallNet()
    # Fewer solver iterations than its defaults (10 power, 100 bisection): those take ~20 s a step on 2 CPU cores.
    optimizer = dict(type="SpectralSphere", lr=0.02, power_iteration_steps=3, solver_max_iterations=4)
    wrapper = OptimWrapperConstructor(dict(optimizer=optimizer))(net)
    routes = wrapper.optimizer.optimizers
    assert sorted(routes) == ["fallback", "matrix"] and type(routes["matrix"]).__name__ == "SpectralSphere"
    assert [p for g in routes["matrix"].param_groups for p in g["params"]] == [net.fc1.weight, net.fc2.weight]
    losses = _train(wrapper, net, 4)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_the_layout_meets_param_layout_and_lora_pairs_stay_refused():
    plain = OptimizerSpec(name="X", needs=(Need.PARAM_LAYOUT,))
    assert unmet_needs(plain) == [NEED_TEXT[Need.PARAM_LAYOUT]]
    assert unmet_needs(OptimizerSpec(name="X", needs=(Need.PARAM_LAYOUT,), layout="use_muon")) == []
    assert "lora_A/lora_B" in unmet_needs(OptimizerSpec(name="X", needs=(Need.LORA_ADAPTERS,)))[0]


def test_flag_groups_splits_the_muon_part_by_shape_only_when_asked():
    a, b, c, bias = (torch.zeros(4, 4), torch.zeros(8, 4), torch.zeros(4, 4), torch.zeros(4))
    plain = flag_groups([{"params": [a, b, c], "lr": 0.1}], [{"params": [bias]}])
    assert [(len(g["params"]), g["use_muon"]) for g in plain] == [(3, True), (1, False)]
    shapes = flag_groups([{"params": [a, b, c], "lr": 0.1}], [{"params": [bias]}], "use_muon_shapes")
    assert [([tuple(p.shape) for p in g["params"]], g["use_muon"], g.get("lr")) for g in shapes] == [
        ([(4, 4), (4, 4)], True, 0.1), ([(8, 4)], True, 0.1), ([(4,)], False, None)]


@pytest.mark.parametrize("cfg, key, words", [
    (dict(type="NorMuon", lr=0.02, fallback=dict(type="AdamW")), "optim_wrapper.optimizer.fallback", "AdamW part"),
    (dict(type="NorMuon", lr=0.02, flatten_conv=True), "optim_wrapper.optimizer.fallback", "flatten_conv"),
    (dict(type="ZeroRedundancyOptimizer", optimizer_type="NorMuon", lr=0.02), "optim_wrapper.optimizer",
     "ZeroRedundancyOptimizer"),
])
def test_what_the_layout_cannot_take_is_refused_naming_the_key(cfg, key, words):
    with assume_met(Need.DISTRIBUTED), pytest.raises(OptimizerConfigError) as info:  # ZeRO's own need
        OptimWrapperConstructor(dict(optimizer=cfg))
    assert info.value.key == key and words in str(info.value)


@pytest.mark.parametrize("config, strategy", [("faster_rcnn_r18_small_fsdp.py", "FSDP"),
                                              ("faster_rcnn_r18_small_deepspeed_zero2.py", "DeepSpeed")])
def test_strategies_that_flatten_the_groups_refuse_the_layout_at_check_time(config, strategy):
    cfg = Config.fromfile(str(REPO / "configs" / config))
    cfg.merge_from_dict({"optim_wrapper.optimizer": dict(_delete_=True, type="NorMuon", lr=0.02)})
    with pytest.raises(StrategyConfigError) as info:
        check_strategy_config(cfg)
    assert info.value.key == "optim_wrapper.optimizer.type" and f"cannot run under {strategy}" in str(info.value)


def _two_process_worker(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out = {}
        for cfg in (dict(type="DistributedMuon", lr=0.02, adamw_lr=1e-2),
                    dict(type="DeMo", lr=1e-2, flatten_conv=True)):
            torch.manual_seed(0)
            net = SmallNet()
            net.fc0 = nn.Linear(8, 8)  # a second matrix shape in the Muon part (unused by forward)
            wrapper = OptimWrapperConstructor(dict(optimizer=cfg))(net)
            losses = _train(wrapper, net, 6)
            weights = torch.cat([p.detach().flatten() for p in net.parameters()])
            gathered = [torch.zeros_like(weights) for _ in range(2)]
            dist.all_gather(gathered, weights)
            out[cfg["type"]] = (losses, torch.equal(gathered[0], gathered[1]))
        results[rank] = out
    finally:
        dist.destroy_process_group()


@pytest.mark.long
def test_distributed_muon_and_demo_train_under_two_processes():
    """Their layouts (one Muon group per shape; 2-D weights and views for DeMo) run where they are runnable."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_two_process_worker, args=(free_port(), results), nprocs=2)
        results = dict(results)
    for name in ("DistributedMuon", "DeMo"):
        losses, in_sync = results[0][name]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], (name, losses)
        assert in_sync, f"{name}: the two processes' weights differ"
