"""torchao as a catalogue source: its names, HF's spellings of it, its real state size, and lr schedules.

torchao keeps each group's ``lr`` as a 0-d tensor and raises if a float is
written there; these tests hold that mmengine's schedulers, run on the optim
wrapper visdet's constructor builds, still change the update torchao applies.
Steps run with torch.compile off (``force_eager``, the same maths; compiling
costs 5-50 s a class on 2 cores): the compiled path trains the detector in
tests/configs/test_optimizer_family_configs.py (configs/faster_rcnn_torchao_adamw8bit.py).
"""
from __future__ import annotations

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
from mmengine.registry import init_default_scope

from visdet.engine.optim import OptimizerUnavailableError, get_catalog
from visdet.registry import OPTIMIZERS

torchao_optim = pytest.importorskip("torchao.optim")  # installed by tools/setup_env.sh (.[all]); CI has it

LOW_BIT = ["AdamW4bit", "torchao_AdamW8bit", "AdamWFp8", "Adam4bit", "torchao_Adam8bit", "AdamFp8"]


@pytest.fixture(autouse=True)
def eager():
    with torch.compiler.set_stance("force_eager"):
        yield


def test_names_follow_the_collision_rule_and_hf_spellings_resolve():
    catalogue = get_catalog()
    assert catalogue.lookup("AdamW8bit").spec.source == "bitsandbytes"  # ranks higher: keeps the bare name
    assert catalogue.lookup("torchao_AdamW8bit").spec.import_path == "torchao.optim.AdamW8bit"
    assert catalogue.lookup("AdamW4bit").spec.import_path == "torchao.optim.AdamW4bit"
    params = [torch.nn.Parameter(torch.zeros(4))]
    assert type(OPTIMIZERS.build(dict(type="adamw_torch_8bit", params=params, lr=1e-3))) is torchao_optim.AdamW8bit
    assert type(OPTIMIZERS.build(dict(type="adamw_torch_4bit", params=params, lr=1e-3))) is torchao_optim.AdamW4bit


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cpu_offload_optimizer_is_refused_without_cuda_with_the_reason():
    with pytest.raises(OptimizerUnavailableError, match="needs a CUDA device"):
        OPTIMIZERS.build(dict(type="CPUOffloadOptimizer", params=[torch.nn.Parameter(torch.zeros(4))], lr=1e-3))


@pytest.mark.parametrize("name", LOW_BIT)
def test_catalogued_state_size_is_the_codes_and_scales_it_holds(name):
    weight = torch.nn.Parameter(torch.randn(256, 256) * 0.02)
    optimizer = OPTIMIZERS.build(dict(type=name, params=[weight], lr=1e-3))
    inputs = torch.randn(4, 256)
    for _ in range(2):
        optimizer.zero_grad()
        (inputs @ weight.T).square().mean().backward()
        optimizer.step()
    held = 0
    for value in optimizer.state[weight].values():
        if hasattr(value, "codes"):  # torchao's OptimState8bit / 4bit / Fp8 subclasses
            held += value.codes.nbytes + value.scale.nbytes
        elif value.numel() > 1:
            held += value.nbytes
    expected = get_catalog().lookup(name).spec.state_bytes
    assert held / weight.numel() == pytest.approx(expected, rel=0.02)
    assert expected < 2.1  # against 8 for fp32 AdamW


def _first_updates(schedule, kind: str = "torchao_AdamW8bit", steps: int = 4) -> tuple[list[float], list[float]]:
    """Update sizes per step of ``kind`` under visdet's constructor, and the lr the group held."""
    init_default_scope("visdet")
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)  # 4096 weights: the 8-bit path
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type=kind, lr=1e-2, weight_decay=0.0)))
    scheduler = schedule(wrapper) if schedule else None
    inputs = torch.randn(8, 64)
    sizes, lrs = [], []
    for _ in range(steps):
        before = model.weight.detach().clone()
        lrs.append(float(wrapper.optimizer.param_groups[0]["lr"]))
        wrapper.update_params(model(inputs).square().mean())
        sizes.append((model.weight.detach() - before).abs().mean().item())
        if scheduler is not None:
            scheduler.step()
    return sizes, lrs


@pytest.mark.parametrize("schedule", [
    lambda w: LinearLR(w, start_factor=0.1, by_epoch=False, begin=0, end=4),
    lambda w: CosineAnnealingLR(w, T_max=4, eta_min=0.0, by_epoch=False, begin=0, end=4),
], ids=["LinearLR", "CosineAnnealingLR"])
def test_mmengine_schedulers_change_the_update_torchao_applies(schedule):
    plain, plain_lrs = _first_updates(None)
    scheduled, lrs = _first_updates(schedule)
    assert plain_lrs == pytest.approx([1e-2] * 4)
    assert lrs != pytest.approx(plain_lrs)  # the scheduler did write the group's lr
    # Same gradients on the first step: the update is lr's share of the unscheduled one.
    assert scheduled[0] / plain[0] == pytest.approx(lrs[0] / 1e-2, rel=0.01)
    # Every step: the update torch's fp32 AdamW makes under the same schedule, up to 8-bit rounding of the moments.
    reference, reference_lrs = _first_updates(schedule, kind="AdamW")
    assert lrs == pytest.approx(reference_lrs)
    assert scheduled == pytest.approx(reference, rel=0.1), (scheduled, reference, plain)
    assert plain != pytest.approx(reference, rel=0.1)  # which an lr the scheduler did not apply would give
