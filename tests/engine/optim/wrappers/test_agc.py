"""Adaptive gradient clipping (clip_grad=dict(type='agc')): the maths against a hand computation, the config
checks, the wrapper's clip path and log, and one step of the real detector."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

from visdet.engine.optim import DefaultOptimWrapperConstructor, OptimizerConfigError
from visdet.engine.optim.wrappers.agc import adaptive_clip_grad_, unitwise_norm
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper

REPO = Path(__file__).resolve().parents[4]


def test_unit_norms_are_per_output_row_and_one_for_vectors():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert unitwise_norm(weight).flatten().tolist() == [5.0, 1.0]
    assert unitwise_norm(torch.ones(2, 1, 2, 2)).flatten().tolist() == [2.0, 2.0]  # a conv kernel's channels
    assert float(unitwise_norm(torch.tensor([3.0, 4.0]))) == 5.0  # a bias: one unit


def test_agc_clips_by_hand_computation():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]))  # unit norms 5, 0, 1
        layer.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
    layer.weight.grad = torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.001, 0.0]])  # grad norms 1, 0.5, 0.001
    layer.bias.grad = torch.tensor([0.0, 0.0, 0.04])  # norm 0.04 against the bias's eps
    before = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
    total = adaptive_clip_grad_(layer.parameters(), clip_factor=0.1, eps=0.01)
    assert math.isclose(float(total), float(before.norm()), rel_tol=1e-6)  # the norm before clipping
    # unit 0: limit 0.1*5 = 0.5 < 1, scaled by 0.5; unit 1: limit 0.1*max(0, 0.01) = 0.001, scaled by 0.002;
    # unit 2: limit 0.1*1 = 0.1 > 0.001, unchanged; bias: limit 0.1*0.01 = 0.001, scaled by 0.001/0.04
    expected = torch.tensor([[0.3, 0.4], [0.0006, 0.0008], [0.001, 0.0]])
    assert torch.allclose(layer.weight.grad, expected, atol=1e-7)
    assert torch.allclose(layer.bias.grad, torch.tensor([0.0, 0.0, 0.001]), atol=1e-7)
    assert adaptive_clip_grad_([nn.Parameter(torch.ones(2))], clip_factor=0.1) is None  # no gradient


@pytest.mark.parametrize("clip_grad, key, match", [
    (dict(type="agc"), "optim_wrapper.clip_grad", "clip_grad type='agc' needs 'clip_factor'"),
    (dict(type="agc", clip_factor=0.01, esp=1e-3), "optim_wrapper.clip_grad", "unknown argument 'esp'.*'eps'"),
    (dict(type="agc", clip_factor=0), "optim_wrapper.clip_grad.clip_factor", "clip_factor=0 would zero"),
    (dict(type="agc", clip_factor=-1.0), "optim_wrapper.clip_grad.clip_factor", "clip_factor"),
    (dict(type="agc", clip_factor="0.01"), "optim_wrapper.clip_grad.clip_factor", "without quotes"),
    (dict(type="agc", clip_factor=0.01, eps=0), "optim_wrapper.clip_grad.eps", "zero-initialised"),
    (dict(type="agc", clip_factor=0.01, norm_type=-2), "optim_wrapper.clip_grad.norm_type", "positive"),
    (dict(type="adaptive", clip_factor=0.01), "optim_wrapper.clip_grad.type", "'norm', 'value' or 'agc'"),
])
def test_bad_agc_configs_are_refused_at_build_time_at_their_key(clip_grad, key, match):
    with pytest.raises(OptimizerConfigError, match=match) as raised:
        DefaultOptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1), clip_grad=clip_grad))
    assert raised.value.key == key
    with pytest.raises(OptimizerConfigError, match=match):  # the wrapper checks too when built directly
        OptimWrapper(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), clip_grad=clip_grad)


@pytest.mark.parametrize("wrapper_cls", [OptimWrapper, AmpOptimWrapper], ids=["fp32", "amp-bf16-cpu"])
def test_the_wrapper_clips_unitwise_steps_and_logs_grad_norm(wrapper_cls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reference = copy.deepcopy(model)
    wrapper = wrapper_cls(optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                          clip_grad=dict(type="agc", clip_factor=0.01))
    x = torch.randn(16, 4)
    with wrapper.optim_context(model):
        loss = model(x).square().mean() * 100
    wrapper.update_params(loss)
    # The same step by hand: the reference model's gradients (fp32), clipped by AGC, then SGD with lr 1.
    reference(x).square().mean().mul(100).backward()
    grads = [p.grad.clone() for p in reference.parameters()]
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    adaptive_clip_grad_(reference.parameters(), clip_factor=0.01)
    clipped = 0
    for p_ref, p, g in zip(reference.parameters(), model.parameters(), grads):
        limit = 0.01 * unitwise_norm(p_ref.detach()).clamp(min=1e-3)
        assert (unitwise_norm(p_ref.grad) <= limit * 1.0001).all()
        clipped += int((unitwise_norm(g) > limit).sum())
        tol = 1e-6 if wrapper_cls is OptimWrapper else 2e-3  # bf16 autocast changes the gradients a little
        assert torch.allclose(p.detach(), (p_ref - p_ref.grad).detach(), atol=tol), "the step used clipped grads"
    assert clipped > 0  # the test would pass without clipping otherwise
    logged = MessageHub.get_current_instance().get_scalar("train/grad_norm").current()
    assert math.isclose(logged, float(total), rel_tol=2e-2 if wrapper_cls is AmpOptimWrapper else 1e-5)


def _detector_batch(hw: tuple[int, int] = (64, 64)) -> dict:
    """One noise image with two bright boxes and their annotations, as the detector's data loader gives it."""
    from visdet.structures import DetDataSample

    boxes = [[6.0, 8.0, 30.0, 34.0], [36.0, 16.0, 60.0, 58.0]]
    img = torch.randint(0, 60, (3, *hw), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for x1, y1, x2, y2 in boxes:
        img[:, int(y1):int(y2), int(x1):int(x2)] = 200
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0), flip=False))
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor([0, 2]))
    return dict(inputs=[img], data_samples=[sample])


def test_one_step_of_the_real_detector_with_agc():
    from visdet.registry import MODELS

    init_default_scope("visdet")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(REPO / "configs/faster_rcnn_r18_small.py")).model)
    model.train()
    wrapper = DefaultOptimWrapperConstructor(dict(
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        clip_grad=dict(type="agc", clip_factor=0.01, eps=1e-3)))(model)
    seen: dict[str, int] = {}

    def recording(parameters, **kwargs):  # AGC as the wrapper calls it, with the units it clipped counted
        parameters = list(parameters)
        limits = [kwargs["clip_factor"] * unitwise_norm(p.detach()).clamp(min=kwargs["eps"]) for p in parameters]
        seen["clipped"] = sum(int((unitwise_norm(p.grad) > lim).sum()) for p, lim in zip(parameters, limits))
        total = adaptive_clip_grad_(parameters, **kwargs)
        seen["within"] = all(bool((unitwise_norm(p.grad) <= lim * 1.0001).all()) for p, lim in zip(parameters, limits))
        seen["params"] = len(parameters)
        return total

    wrapper.clip_func = recording
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = model.train_step(_detector_batch(), wrapper)
    assert math.isfinite(float(sum(v.detach() for k, v in losses.items() if "loss" in k)))
    assert seen["params"] > 50 and seen["clipped"] > 0 and seen["within"]
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(before[n], p.detach())]
    assert len(moved) > 50 and wrapper.nonfinite_skips == 0
    assert math.isfinite(MessageHub.get_current_instance().get_scalar("train/grad_norm").current())
