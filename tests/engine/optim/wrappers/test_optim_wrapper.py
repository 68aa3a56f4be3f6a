"""visdet's OptimWrapper (and AmpOptimWrapper without a scaler) skips a step whose loss or gradients are not
finite, leaving parameters and optimizer state untouched; with float16 the GradScaler does that job."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from guard_helpers import NAN, loss_of, make, poison_grad
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.nonfinite import SKIPS_SCALAR, NonFiniteTrainingError
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper


def snapshot(model: nn.Module, wrapper: OptimWrapper) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.optimizer.state_dict())


def assert_unchanged(before: tuple[dict, dict], model: nn.Module, wrapper: OptimWrapper) -> None:
    params, opt_state = before
    for name, value in model.state_dict().items():
        if not name.startswith("bn.running") and name != "bn.num_batches_tracked":  # buffers move in forward
            assert torch.equal(value, params[name]), name
    now = wrapper.optimizer.state_dict()
    assert now["param_groups"] == opt_state["param_groups"]
    assert now["state"].keys() == opt_state["state"].keys() and now["state"]
    for index, state in now["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_state["state"][index][key]), (index, key)
    assert all(p.grad is None for p in wrapper.optimizer.param_groups[0]["params"])


@pytest.mark.parametrize("wrapper_cls", [OptimWrapper, AmpOptimWrapper], ids=["fp32", "amp-bf16-cpu"])
def test_nan_loss_skips_the_step_leaving_parameters_and_state_untouched(small_net, wrapper_cls, warnings_logged):
    wrapper = make(small_net, wrapper_cls)
    if wrapper_cls is AmpOptimWrapper:
        assert wrapper.cast_dtype == torch.bfloat16 and wrapper.loss_scaler is None
    with wrapper.optim_context(small_net):
        wrapper.update_params(loss_of(small_net))  # a good step first, so AdamW has state to keep
    before = snapshot(small_net, wrapper)
    with wrapper.optim_context(small_net):
        loss = loss_of(small_net, 1) * NAN
    wrapper.update_params(loss)
    assert_unchanged(before, small_net, wrapper)
    assert (wrapper.nonfinite_skips, wrapper.consecutive_nonfinite) == (1, 1)
    assert wrapper.message_hub.get_scalar(SKIPS_SCALAR).current() == 1
    messages = [r.getMessage() for r in warnings_logged]
    assert any("Non-finite loss" in m and "step skipped" in m and "1/10 in a row" in m for m in messages), messages


@pytest.mark.parametrize(
    "wrapper_cls, clip_grad",
    [
        (OptimWrapper, None),
        (OptimWrapper, dict(max_norm=1.0)),
        (OptimWrapper, dict(type="value", clip_value=0.1)),  # clipping by value would make inf finite
        (AmpOptimWrapper, dict(max_norm=1.0)),
    ],
    ids=["no-clip", "clip-norm", "clip-value", "amp-bf16-clip-norm"],
)
def test_finite_loss_with_inf_gradients_skips_the_step(small_net, wrapper_cls, clip_grad, warnings_logged):
    wrapper = make(small_net, wrapper_cls, clip_grad=clip_grad)
    wrapper.update_params(loss_of(small_net))
    before = snapshot(small_net, wrapper)
    handle = poison_grad(small_net.fc1.weight)
    with wrapper.optim_context(small_net):
        loss = loss_of(small_net, 1)
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    handle.remove()
    assert_unchanged(before, small_net, wrapper)
    assert wrapper.nonfinite_skips == 1
    assert any("Non-finite gradients" in r.getMessage() for r in warnings_logged)


def test_accumulation_decides_at_the_real_step(small_net):
    wrapper = make(small_net, accumulative_counts=2, max_nonfinite_steps=1)
    wrapper.update_params(loss_of(small_net))
    wrapper.update_params(loss_of(small_net, 1))  # a good window: one update
    before = snapshot(small_net, wrapper)
    wrapper.update_params(loss_of(small_net) * NAN)  # not the real step yet: nothing decided
    assert wrapper.nonfinite_skips == 0
    with pytest.raises(NonFiniteTrainingError, match="1 optimizer steps in a row"):
        wrapper.update_params(loss_of(small_net, 1))  # a finite loss does not rescue the window
    assert_unchanged(before, small_net, wrapper)
    assert wrapper.nonfinite_skips == 1


def test_float16_amp_leaves_non_finite_steps_to_its_grad_scaler(small_net):
    wrapper = make(small_net, AmpOptimWrapper, dtype="float16", max_nonfinite_steps=1)
    assert wrapper.loss_scaler is not None
    scale = wrapper.loss_scaler.get_scale()
    handle = poison_grad(small_net.fc1.weight)
    wrapper.update_params(loss_of(small_net))  # no NonFiniteTrainingError: the scaler skips and backs off
    handle.remove()
    assert wrapper.nonfinite_skips == 0 and wrapper.loss_scaler.get_scale() < scale


def test_configs_build_the_guarded_wrappers_under_visdet_scope(small_net):
    with DefaultScope.overwrite_default_scope("visdet"):
        plain = build_optim_wrapper(small_net, dict(optimizer=dict(type="SGD", lr=0.1), max_nonfinite_steps=4))
        amp = build_optim_wrapper(
            small_net, dict(type="AmpOptimWrapper", optimizer=dict(type="SGD", lr=0.1), max_nonfinite_steps=5)
        )
    assert type(plain) is OptimWrapper and plain.max_nonfinite_steps == 4
    assert type(amp) is AmpOptimWrapper and amp.max_nonfinite_steps == 5
    assert OptimWrapper(torch.optim.SGD(small_net.parameters(), lr=0.1)).max_nonfinite_steps == 10


def test_a_skipped_step_logs_its_own_grad_norm_not_the_last_good_one(small_net):
    wrapper = make(small_net, clip_grad=dict(max_norm=1.0))
    wrapper.update_params(loss_of(small_net))
    good = wrapper.message_hub.get_scalar("train/grad_norm").current()
    assert math.isfinite(good)
    wrapper.update_params(loss_of(small_net, 1) * NAN)
    assert wrapper.nonfinite_skips == 1
    logged = wrapper.message_hub.get_scalar("train/grad_norm").current()
    assert not math.isfinite(logged), (good, logged)  # was `good` again: a stale value on a skipped step


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf"), -float("inf")])
def test_the_guards_max_abs_gradient_equals_torchs_inf_norm_over_mixed_dtypes(poison):
    """The guard's per-tensor aminmax is the value get_total_norm(inf) gives, NaN and inf included."""
    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(n, dtype=dtype)) for n, dtype in
              ((1000, torch.float32), (7, torch.float16), (33, torch.bfloat16), (5, torch.float64), (0, torch.float32))]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=g) * 50).to(p.dtype)
    if poison is not None:
        params[1].grad[3] = poison
    wrapper = OptimWrapper(torch.optim.SGD(params, lr=0.1))
    # torch's raises on the empty gradient (no identity for max); the guard skips it.
    expected = torch.nn.utils.get_total_norm([p.grad for p in params if p.numel()], norm_type=float("inf"))
    got = wrapper._grad_max_abs()
    if poison is not None and math.isnan(poison):
        assert torch.isnan(got)
    else:
        assert float(got) == float(expected) and (poison is None) == bool(torch.isfinite(got))
