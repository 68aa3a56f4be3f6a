"""AmpOptimWrapper: CPU autocast, GradScaler only for float16, config errors, state dicts."""
from __future__ import annotations

import logging

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from testutils import run_python
# Importing registers it in visdet's OPTIM_WRAPPERS.
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.errors import OptimizerConfigError


def regression(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A two-layer net and a learnable linear target."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    return model, x, y


def make(model: torch.nn.Module, lr: float = 0.05, **kwargs) -> AmpOptimWrapper:
    return AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=lr), **kwargs)


def train(wrapper: AmpOptimWrapper, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list:
    losses = []
    for _ in range(steps):
        with wrapper.optim_context(model):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    return losses


def test_mmengine_builder_under_visdet_scope_builds_ours_on_cpu():
    model = torch.nn.Linear(4, 2)
    with DefaultScope.overwrite_default_scope("visdet"):
        wrapper = build_optim_wrapper(model, dict(type="AmpOptimWrapper", optimizer=dict(type="SGD", lr=0.1)))
    assert isinstance(wrapper, AmpOptimWrapper)
    assert wrapper.device_type == "cpu"
    assert wrapper.cast_dtype == torch.bfloat16
    assert wrapper.loss_scaler is None


def test_optim_context_autocasts_to_bfloat16_on_cpu():
    model = torch.nn.Linear(4, 2)
    wrapper = make(model)
    x = torch.randn(3, 4)
    with wrapper.optim_context(model):
        assert model(x).dtype == torch.bfloat16
    assert model(x).dtype == torch.float32


def test_float32_disables_autocast():
    model = torch.nn.Linear(4, 2)
    wrapper = make(model, dtype=torch.float32)
    with wrapper.optim_context(model):
        assert model(torch.randn(3, 4)).dtype == torch.float32
    assert wrapper.loss_scaler is None


def test_bfloat16_training_learns_and_state_dict_round_trips(info_records):
    model, x, y = regression()
    wrapper = make(model)
    losses = train(wrapper, model, x, y, steps=30)
    assert losses[-1] < 0.5 * losses[0]

    state = wrapper.state_dict()
    assert "loss_scaler" not in state
    assert state["state"] or state["param_groups"]

    fresh_model, _, _ = regression(seed=1)
    fresh = make(fresh_model, lr=0.9)
    fresh.load_state_dict(state)
    assert fresh.optimizer.param_groups[0]["lr"] == 0.05

    # A checkpoint written by a float16 wrapper carries a scaler state: dropped, with one INFO line.
    with_scaler = {**state, "loss_scaler": {"scale": 1024.0, "_growth_tracker": 0}}
    fresh.load_state_dict(with_scaler)
    assert "loss_scaler" in with_scaler  # the caller's dict is not modified
    assert fresh.optimizer.param_groups[0]["lr"] == 0.05
    assert any("loss_scaler" in r.getMessage() and "dropped" in r.getMessage() for r in info_records)


def test_loss_scale_is_ignored_without_a_scaler_with_one_info_line(info_records):
    wrapper = make(torch.nn.Linear(2, 1), loss_scale=512.0)
    assert wrapper.loss_scaler is None
    ignored = [r for r in info_records if "loss_scale=512.0 is ignored" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.INFO
    info_records.clear()
    make(torch.nn.Linear(2, 1))  # default loss_scale: nothing to say
    assert not [r for r in info_records if "ignored" in r.getMessage()]


def test_float16_on_cpu_uses_a_scaler_that_skips_inf_steps():
    model, x, y = regression()
    wrapper = make(model, dtype="float16", loss_scale=dict(init_scale=256.0))
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype == torch.float16

    # A finite step updates the parameters.
    before = [p.detach().clone() for p in model.parameters()]
    wrapper.update_params(torch.nn.functional.mse_loss(out.float(), y))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert wrapper.loss_scaler.get_scale() == 256.0

    # A step with an inf gradient is skipped and the scale backs off.
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
    wrapper.backward(loss)
    model[0].weight.grad[0, 0] = float("inf")
    wrapper.step()
    wrapper.zero_grad()
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert wrapper.loss_scaler.get_scale() == 128.0

    state = wrapper.state_dict()
    assert state["loss_scaler"]["scale"] == 128.0
    fresh_model, _, _ = regression()
    fresh = make(fresh_model, dtype=torch.float16)
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 128.0
    fresh.load_state_dict({k: v for k, v in state.items() if k != "loss_scaler"})  # old checkpoints load too


def test_static_float_loss_scale_stays_fixed_after_an_inf_step():
    model, x, y = regression()
    wrapper = make(model, dtype="float16", loss_scale=64.0)
    train(wrapper, model, x, y, steps=2)
    with wrapper.optim_context(model):
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
    wrapper.backward(loss)
    model[0].weight.grad[0, 0] = float("inf")
    before = model[0].weight.detach().clone()
    wrapper.step()
    assert torch.equal(before, model[0].weight)  # skipped
    assert wrapper.loss_scaler.get_scale() == 64.0  # a dynamic scale would back off to 32


def test_clip_grad_clips_bfloat16_gradients_before_the_step():
    model, x, y = regression()
    wrapper = make(model, lr=0.0, clip_grad=dict(max_norm=0.1))
    with wrapper.optim_context(model):
        loss = torch.nn.functional.mse_loss(model(x).float(), y) * 100
    wrapper.backward(loss)
    norm_before = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert norm_before > 1.0
    wrapper.step()
    norm_after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert norm_after == pytest.approx(0.1, abs=1e-4)


def test_clip_grad_with_a_scaler_clips_unscaled_gradients():
    model, x, y = regression()
    wrapper = make(model, lr=0.0, dtype="float16", loss_scale=64.0, clip_grad=dict(max_norm=0.1))
    with wrapper.optim_context(model):
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
    wrapper.backward(loss)
    norm_scaled = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert torch.isfinite(norm_scaled) and norm_scaled > 64 * 0.1
    wrapper.step()
    norm_after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert norm_after == pytest.approx(0.1, abs=1e-4)
    assert wrapper.loss_scaler.get_scale() == 64.0  # the step was not skipped


def test_fsdp_option_uses_sharded_grad_scaler():
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    wrapper = make(torch.nn.Linear(2, 1), dtype="float16", use_fsdp=True)
    assert isinstance(wrapper.loss_scaler, ShardedGradScaler)


def test_optimizer_wrapper_kwargs_are_forwarded():
    clip_grad = dict(type="norm", max_norm=1.0)
    wrapper = make(torch.nn.Linear(2, 1), accumulative_counts=2, clip_grad=clip_grad)
    assert wrapper._accumulative_counts == 2
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    assert clip_grad == dict(type="norm", max_norm=1.0)  # the config dict is not modified


@pytest.mark.parametrize(
    "kwargs, key, fragments",
    [
        (dict(dtype="fp16"), "optim_wrapper.dtype", ["'fp16'", "float16", "bfloat16", "float32", "float64"]),
        (dict(dtype=torch.int8), "optim_wrapper.dtype", ["torch.int8", "float16", "bfloat16"]),
        (dict(dtype=16), "optim_wrapper.dtype", ["16", "float16", "bfloat16"]),
        (dict(loss_scale="static"), "optim_wrapper.loss_scale", ["'static'", "'dynamic'", "dict"]),
        (dict(loss_scale=[1.0]), "optim_wrapper.loss_scale", ["[1.0]", "'dynamic'", "dict"]),
        (dict(loss_scale=-1.0), "optim_wrapper.loss_scale", ["-1.0", "positive"]),
        (dict(loss_scale=dict(init_scal=2.0)), "optim_wrapper.loss_scale",
         ["'init_scal'", "did you mean 'init_scale'", "growth_interval"]),
        (dict(loss_scale=dict(device="cuda")), "optim_wrapper.loss_scale", ["'device'", "init_scale"]),
        # Found by the fuzzer: GradScaler raised a bare AssertionError for these, or took them silently.
        (dict(dtype="float16", loss_scale=dict(growth_factor=1.0)), "optim_wrapper.loss_scale.growth_factor",
         ["growth_factor must be > 1", "got 1", "default is 2.0"]),
        (dict(dtype="float16", loss_scale=dict(growth_factor=torch.tensor(-0.0))),
         "optim_wrapper.loss_scale.growth_factor", ["positive finite number", "tensor(-0.)"]),
        (dict(dtype="float16", loss_scale=dict(backoff_factor=1.5)), "optim_wrapper.loss_scale.backoff_factor",
         ["backoff_factor must be in (0, 1)", "1.5", "default is 0.5"]),
        (dict(dtype="float16", loss_scale=dict(growth_interval=0.5)), "optim_wrapper.loss_scale.growth_interval",
         ["integer >= 1", "0.5"]),
        (dict(dtype="float16", loss_scale=dict(enabled="yes")), "optim_wrapper.loss_scale.enabled",
         ["True or False", "'yes'"]),
        (dict(use_fsdp="yes"), "optim_wrapper.use_fsdp", ["'yes'", "True or False"]),
        (dict(accumulative_counts=0), "optim_wrapper.accumulative_counts", ["0", ">= 1"]),
        (dict(clip_grad=dict(max_nrom=1.0)), "optim_wrapper.clip_grad", ["'max_nrom'", "max_norm"]),
        (dict(clip_grad=dict(type="l2", max_norm=1.0)), "optim_wrapper.clip_grad.type", ["'l2'", "'norm'", "'value'"]),
    ],
)
def test_bad_values_raise_config_errors_naming_key_value_and_choices(kwargs, key, fragments):
    with pytest.raises(OptimizerConfigError) as info:
        make(torch.nn.Linear(2, 1), **kwargs)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_loss_scale_is_rejected_even_when_no_scaler_is_used():
    with pytest.raises(OptimizerConfigError, match="optim_wrapper.loss_scale"):
        make(torch.nn.Linear(2, 1), dtype="bfloat16", loss_scale="static")


def test_parameters_on_several_device_types_are_rejected():
    on_cpu = torch.nn.Parameter(torch.zeros(2))
    on_meta = torch.nn.Parameter(torch.zeros(2, device="meta"))
    with pytest.raises(OptimizerConfigError, match="optim_wrapper.optimizer: .*several device types.*cpu, meta"):
        AmpOptimWrapper(optimizer=torch.optim.SGD([on_cpu, on_meta], lr=0.1))


def test_import_is_silent_and_survives_reload():
    result = run_python(
        """
        import importlib
        import visdet.engine.optim.wrappers.amp_wrapper as m
        importlib.reload(m)
        from visdet.registry import OPTIM_WRAPPERS
        assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is m.AmpOptimWrapper
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.cuda
def test_cuda_defaults_to_float16_with_a_scaler():
    model, x, y = regression()
    model, x, y = model.cuda(), x.cuda(), y.cuda()
    wrapper = make(model)
    assert wrapper.device_type == "cuda"
    assert wrapper.cast_dtype == torch.float16
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    with wrapper.optim_context(model):
        assert model(x).dtype == torch.float16
    losses = train(wrapper, model, x, y, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    assert "loss_scaler" in wrapper.state_dict()

    if torch.cuda.is_bf16_supported():
        bf16 = make(model, dtype="bfloat16")
        assert bf16.loss_scaler is None
        with bf16.optim_context(model):
            assert model(x).dtype == torch.bfloat16
