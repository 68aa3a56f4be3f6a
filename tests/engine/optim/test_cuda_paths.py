"""The optimizer paths that only exist on CUDA: torch's fused CUDA kernels picked by visdet's constructor,
and float16 autocast with a GradScaler (skipped steps, the scale backing off) on them.

Marked ``cuda``: skipped without a CUDA device; ``bash tools/cuda_check.sh`` runs them (docs/cuda.md).
The CPU counterparts are tests/engine/optim/build/test_implementation.py and
tests/engine/optim/wrappers/test_amp_wrapper.py.
"""
from __future__ import annotations

import copy

import pytest
import torch

from testutils import SmallNet
from visdet.engine.optim.build.constructor import OptimWrapperConstructor

pytestmark = pytest.mark.cuda

#: Configs the constructor gets on CUDA; those in FUSED_ON_CUDA must get torch's fused kernel.
OPTIMIZERS = [
    dict(type="AdamW", lr=1e-2, weight_decay=0.05),
    dict(type="Adam", lr=1e-2, amsgrad=True),
    dict(type="SGD", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    dict(type="Adagrad", lr=0.1),
    dict(type="RMSprop", lr=1e-2, momentum=0.5),
]
FUSED_ON_CUDA = ("AdamW", "Adam", "SGD")


def _net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet().cuda()


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=gen).cuda(), torch.randint(0, 4, (n,), generator=gen).cuda()


def _build(model: torch.nn.Module, optimizer: dict, **wrapper):
    """Several groups where the config decays weights (norms undecayed, fc2 at half the lr), as detectors do."""
    paramwise = dict(norm_decay_mult=0.0, custom_keys={"fc2": dict(lr_mult=0.5)}) if "weight_decay" in optimizer \
        else None
    return OptimWrapperConstructor(dict(optimizer=optimizer, **wrapper), paramwise)(model)


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda c: c["type"])
def test_the_cuda_implementation_the_constructor_picks_matches_foreach_and_the_loop(optimizer):
    """Five steps from the same weights and batch: the chosen kernel, foreach and the per-tensor loop agree."""
    models = {name: _net() for name in ("chosen", "foreach", "loop")}
    initial = copy.deepcopy(models["chosen"].fc1.weight.detach())
    chosen = _build(models["chosen"], optimizer).optimizer
    if optimizer["type"] in FUSED_ON_CUDA:
        assert chosen.defaults["fused"] is True, chosen.defaults
    else:
        assert chosen.defaults.get("fused") or chosen.defaults.get("foreach"), chosen.defaults
    no_fused = {"fused": False} if "fused" in chosen.defaults else {}
    others = {"foreach": _build(models["foreach"], {**optimizer, "foreach": True, **no_fused}).optimizer,
              "loop": _build(models["loop"], {**optimizer, "foreach": False, **no_fused}).optimizer}
    x, y = _batch()
    for _ in range(5):
        for name, opt in (("chosen", chosen), *others.items()):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(models[name](x), y).backward()
            opt.step()
    for reference in ("foreach", "loop"):
        for (name, a), b in zip(models["chosen"].named_parameters(), models[reference].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name}: chosen vs {reference}")
    assert not torch.allclose(models["chosen"].fc1.weight, initial)  # the steps did move the weights


def test_the_constructor_logs_the_fused_cuda_choice(info_records, monkeypatch):
    from visdet.engine.optim.build import implementation

    monkeypatch.setattr(implementation, "_logged", set())  # logged once per process: forget earlier tests
    _build(_net(), dict(type="AdamW", lr=1e-3))
    assert any(r.getMessage() == "AdamW on cuda: fused implementation" for r in info_records)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _fp16_step(wrapper, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, inf_grad: bool = False) -> None:
    """One float16 training step through the wrapper; with ``inf_grad`` fc2.weight's gradient is all inf."""
    handle = model.fc2.weight.register_hook(lambda g: torch.full_like(g, float("inf"))) if inf_grad else None
    try:
        with wrapper.optim_context(model):
            out = model(x)
            assert out.dtype == torch.float16
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        wrapper.update_params(loss)
    finally:
        if handle is not None:
            handle.remove()


@pytest.mark.parametrize("clip_grad", [None, dict(max_norm=1.0)], ids=["no-clip", "clip"])
@pytest.mark.parametrize("optimizer", [dict(type="AdamW", lr=1e-3), dict(type="SGD", lr=0.1)], ids=lambda c: c["type"])
def test_float16_grad_scaler_skips_an_inf_step_and_halves_the_scale(optimizer, clip_grad):
    """The fused kernels take GradScaler's found_inf themselves (_step_supports_amp_scaling): a CUDA-only path."""
    model = _net()
    extra = {"clip_grad": clip_grad} if clip_grad else {}
    wrapper = _build(model, optimizer, type="AmpOptimWrapper", dtype="float16", loss_scale=dict(init_scale=1024.0),
                     **extra)
    assert wrapper.device_type == "cuda" and isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    assert wrapper.optimizer.defaults["fused"] is True
    x, y = _batch()

    before = _params(model)
    _fp16_step(wrapper, model, x, y)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "a finite step changed nothing"
    assert wrapper.loss_scaler.get_scale() == 1024.0

    before = _params(model)
    _fp16_step(wrapper, model, x, y, inf_grad=True)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters())), "the inf step was applied"
    assert wrapper.loss_scaler.get_scale() == 512.0
    assert all(torch.isfinite(p).all() for p in model.parameters())

    before = _params(model)
    _fp16_step(wrapper, model, x, y)  # training goes on at the lower scale
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert wrapper.loss_scaler.get_scale() == 512.0
    assert wrapper.state_dict()["loss_scaler"]["scale"] == 512.0
