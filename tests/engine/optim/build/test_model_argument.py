"""Optimizers that take the model (build/model_argument.py): how the constructor builds them, what it refuses.

The refusals are checked through the pre-flight check a user's ``tools/train.py``
runs (``check_config``, exit status 2), on the shipped AdaLOMO config.
"""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from visdet.engine.optim.wrappers.builder import build_optim_wrapper
from pytorch_optimizer import LOMO, AdaLOMO, AdamMini
from testutils import REPO

from visdet.engine.optim import list_optimizers
from visdet.engine.optim.build.model_argument import build_with_model, takes_model
from visdet.engine.optim.errors import OptimizerConfigError

CONFIG = REPO / "configs" / "faster_rcnn_adalomo.py"


def test_the_class_signature_decides_who_gets_the_model():
    assert takes_model(LOMO) and takes_model(AdaLOMO) and takes_model(AdamMini)
    assert not takes_model(torch.optim.AdamW) and not takes_model(torch.optim.SGD)


def test_the_listing_runs_them_here_and_hf_spellings_are_aliases(small_net):
    verdicts = {i.name: i for i in list_optimizers()}
    for name in ("LOMO", "AdaLOMO", "AdamMini", "Lomo"):
        assert verdicts[name].runs_here, (name, verdicts[name].why_not)
    assert not verdicts["AdaLomo"].runs_here or torch.cuda.is_available()  # allocates its state with .cuda()
    wrapper = build_optim_wrapper(small_net, dict(optimizer=dict(type="lomo", lr=1e-3)))  # HF Trainer's optim="lomo"
    assert type(wrapper.optimizer).__module__.startswith("lomo_optim")


def test_adam_mini_gets_named_parameter_groups_and_frozen_ones_are_left_out(small_net):
    small_net.conv.requires_grad_(False)
    wrapper = build_optim_wrapper(small_net, dict(optimizer=dict(type="AdamMini", lr=1e-3), clip_grad=dict(max_norm=1)))
    names = [group["name"] for group in wrapper.optimizer.param_groups]
    assert "conv.weight" not in names and "fc1.weight" in names
    small_net(torch.randn(2, 3, 8, 8)).sum().backward()
    before = small_net.fc1.weight.detach().clone()
    wrapper.update_params(small_net(torch.randn(2, 3, 8, 8)).sum())  # a plain step: mmengine's path, clipping too
    assert not torch.equal(before, small_net.fc1.weight)


def test_adalomo_steps_conv_kernels():
    """pytorch-optimizer 4.1's AdaLOMO sizes its factors for matrices only; the build gives conv kernels theirs."""
    conv = torch.nn.Conv2d(2, 3, 3)
    optimizer = build_with_model("AdaLOMO", conv, lr=1e-2)
    assert optimizer.exp_avg_sq_row["weight"].shape == (3, 2, 3)
    assert optimizer.exp_avg_sq_col["weight"].shape == (3, 2, 3)
    before = conv.weight.detach().clone()
    optimizer.fused_backward(conv(torch.randn(1, 2, 5, 5)).square().sum(), 1e-2)
    assert not torch.equal(before, conv.weight) and torch.isfinite(conv.weight).all()


@pytest.mark.parametrize("change, key, words", [
    (dict(paramwise_cfg=dict(norm_decay_mult=0.0)), "optim_wrapper.paramwise_cfg.norm_decay_mult", "paramwise"),
    (dict(paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)})), "optim_wrapper.paramwise_cfg.custom_keys",
     "paramwise"),
    (dict(accumulative_counts=2), "optim_wrapper.accumulative_counts", "accumulated"),
    (dict(type="AmpOptimWrapper"), "optim_wrapper.type", "loss scaler"),
    (dict(clip_grad=dict(type="agc", clip_factor=0.01)), "optim_wrapper.clip_grad.type", "clips inside backward"),
    (dict(clip_grad=dict(max_norm=10.0, norm_type=1)), "optim_wrapper.clip_grad.norm_type", "2-norm"),
    (dict(optimizer=dict(type="AdaLOMO", lr=1e-2, clip_grad_norm=1.0)), "optim_wrapper.clip_grad", "set twice"),
])
def test_what_a_fused_optimizer_cannot_honour_is_refused_at_check_time(change, key, words):
    from visdet.engine.preflight import check_config

    cfg = Config.fromfile(str(CONFIG))
    for name, value in change.items():
        cfg.optim_wrapper[name] = value
    with pytest.raises(OptimizerConfigError, match=words) as info:
        check_config(cfg)
    assert info.value.key == key


def test_the_shipped_config_passes_the_check_and_hands_clipping_to_adalomo(small_net):
    from visdet.engine.preflight import check_config

    cfg = Config.fromfile(str(CONFIG))
    check_config(cfg)
    wrapper = build_optim_wrapper(small_net, cfg.optim_wrapper)
    assert isinstance(wrapper.optimizer, AdaLOMO) and wrapper.optimizer.clip_grad_norm == 10.0
    assert not wrapper.clip_grad_kwargs  # the optimizer clips, inside backward; the wrapper does not clip again


def test_several_processes_are_refused_when_built(monkeypatch, small_net):
    from visdet.engine.optim.build import model_argument

    monkeypatch.setattr(model_argument, "_world_size", lambda: 2)
    with pytest.raises(OptimizerConfigError, match="drift apart") as info:
        build_optim_wrapper(small_net, dict(optimizer=dict(type="LOMO", lr=1e-3)))
    assert info.value.key == "optim_wrapper.optimizer.type"


@pytest.mark.parametrize("strategy_config", [
    "faster_rcnn_r18_small_fsdp.py", "faster_rcnn_r18_small_deepspeed_zero2.py"])
def test_strategies_refuse_model_taking_optimizers_at_check_time(strategy_config):
    from visdet.engine.strategies.checks import check_strategy_config
    from visdet.engine.strategies.names import StrategyConfigError

    cfg = Config.fromfile(str(REPO / "configs" / strategy_config))
    cfg.optim_wrapper.optimizer = dict(type="AdamMini", lr=1e-3)
    with pytest.raises(StrategyConfigError, match="takes the model") as info:
        check_strategy_config(cfg)
    assert info.value.key == "optim_wrapper.optimizer.type"
