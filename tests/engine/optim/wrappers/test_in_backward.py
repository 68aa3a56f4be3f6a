"""InBackwardOptimWrapper: each parameter steps inside backward, and training matches the plain wrapper.

The per-parameter optimizers must give bit-identical parameters to one optimizer
over the merged groups (paramwise rules, schedulers included), checkpoints must
resume exactly, gradients must be gone after backward, and what cannot work
(clipping, accumulation, several processes, FSDP, closure optimizers) is refused
at check time or build time with the key named.
"""
from __future__ import annotations

import copy
import io
import logging
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
from mmengine.registry import init_default_scope
from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers import in_backward
from visdet.engine.optim.wrappers.builder import build_optim_wrapper
from visdet.engine.optim.wrappers.in_backward import InBackwardOptimWrapper
from visdet.engine.optim.wrappers.in_backward_optimizer import PerParameterOptimizer
from visdet.engine.optim.wrappers.train_step import train_step

REPO = Path(__file__).resolve().parents[4]
CONFIG = REPO / "configs" / "faster_rcnn_adamw_in_backward.py"
PARAMWISE = dict(norm_decay_mult=0.0, bias_lr_mult=2.0, custom_keys={"head": dict(lr_mult=0.5)})


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _loss(model: nn.Module, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
    return nn.functional.cross_entropy(model(x), y)


def _pair(optimizer: dict, **wrapper_kwargs):
    torch.manual_seed(0)
    plain_model = Net()
    model = copy.deepcopy(plain_model)
    cfg = dict(optimizer=optimizer, paramwise_cfg=PARAMWISE)
    plain = build_optim_wrapper(plain_model, dict(cfg, type="OptimWrapper"))
    wrapper = build_optim_wrapper(model, dict(cfg, type="InBackwardOptimWrapper", **wrapper_kwargs))
    return plain_model, plain, model, wrapper


@pytest.mark.parametrize("optimizer", [dict(type="AdamW", lr=1e-2, weight_decay=0.05),
                                       pytest.param(dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-3),
                                                    marks=pytest.mark.long)],
                         ids=["AdamW", "SGD"])
def test_training_matches_the_plain_wrapper_bit_for_bit_under_a_schedule(optimizer):
    plain_model, plain, model, wrapper = _pair(optimizer)
    assert isinstance(wrapper.optimizer, PerParameterOptimizer)
    schedules = [[LinearLR(w, start_factor=0.1, by_epoch=False, begin=0, end=3),
                  CosineAnnealingLR(w, T_max=6, by_epoch=False, begin=3, end=9)] for w in (plain, wrapper)]
    seen = set()
    for i in range(8):
        scheduled = [group["lr"] for group in wrapper.optimizer.param_groups]
        plain.update_params(_loss(plain_model, i))
        wrapper.update_params(_loss(model, i))
        assert all(p.grad is None for p in model.parameters())  # each gradient freed inside backward
        # This iteration's scheduled lr reached every parameter's own optimizer before it stepped.
        for lr, group in zip(scheduled, wrapper.optimizer.param_groups):
            assert all(wrapper.optimizer.inner[p].param_groups[0]["lr"] == lr for p in group["params"])
        seen.add(scheduled[0])
        for scheduler in (*schedules[0], *schedules[1]):
            scheduler.step()
    assert len(seen) >= 7  # the schedule changed the lr (warmup, then cosine)
    assert wrapper.get_lr() == plain.get_lr()
    for a, b in zip(plain_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("optimizer, low_rank", [
    (dict(type="GaLoreAdamW", lr=1e-2, weight_decay=0.0, no_deprecation_warning=True),
     dict(target_modules=["head"], rank=2, update_proj_gap=2, scale=0.25, proj_type="std")),
    (dict(type="APOLLOAdamW", lr=1e-2, weight_decay=0.0), dict(target_modules=["head"], rank=2, update_proj_gap=2)),
], ids=["GaLoreAdamW", "APOLLOAdamW"])
def test_low_rank_projection_steps_per_parameter_as_hf_layerwise_does(optimizer, low_rank):
    torch.manual_seed(0)
    plain_model = Net()
    model = copy.deepcopy(plain_model)
    cfg = dict(optimizer=optimizer, low_rank=low_rank)
    plain = build_optim_wrapper(plain_model, dict(cfg, type="OptimWrapper"))
    wrapper = build_optim_wrapper(model, dict(cfg, type="InBackwardOptimWrapper"))
    assert wrapper.optimizer.inner[model.head.weight].param_groups[0]["rank"] == 2  # the projection's group keys
    for i in range(4):  # past update_proj_gap: the projection is renewed inside backward too
        plain.update_params(_loss(plain_model, i))
        wrapper.update_params(_loss(model, i))
    # Projected state for the target's weight only, as with one optimizer over all groups. (Not compared bit
    # for bit: the SVD's singular vectors may come out with other signs from one call to the next.)
    for name, param in model.named_parameters():
        state_shapes = {tuple(v.shape) for v in wrapper.optimizer.state[param].values()
                        if isinstance(v, torch.Tensor) and v.ndim >= 2}
        plain_shapes = {tuple(v.shape) for v in plain.optimizer.state[dict(plain_model.named_parameters())[name]]
                        .values() if isinstance(v, torch.Tensor) and v.ndim >= 2}
        assert state_shapes == plain_shapes, name
        assert torch.isfinite(param).all()
    assert any(2 in shape for shape in {tuple(v.shape) for v in wrapper.optimizer.state[model.head.weight].values()
                                        if isinstance(v, torch.Tensor)})  # rank-2 moments


def test_paramwise_settings_reach_each_parameter_optimizer():
    _, _, model, wrapper = _pair(dict(type="AdamW", lr=1e-2, weight_decay=0.05))
    wrapper.update_params(_loss(model, 0))
    own = {name: wrapper.optimizer.inner[p].param_groups[0] for name, p in model.named_parameters()}
    assert own["conv.weight"]["lr"] == 1e-2 and own["conv.weight"]["weight_decay"] == 0.05
    assert own["conv.bias"]["lr"] == 2e-2  # bias_lr_mult
    assert own["bn.weight"]["weight_decay"] == 0.0  # norm_decay_mult
    assert own["head.weight"]["lr"] == own["head.bias"]["lr"] == 5e-3  # custom_keys' lr_mult overrides bias_lr_mult


def test_checkpoint_round_trip_resumes_exactly():
    _, _, model, wrapper = _pair(dict(type="AdamW", lr=1e-2, weight_decay=0.05))
    for i in range(3):
        wrapper.update_params(_loss(model, i))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": wrapper.state_dict()}, buffer)
    assert len(wrapper.state_dict()["state"]) == len(list(model.parameters()))  # torch's layout, by index
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    _, _, resumed_model, resumed = _pair(dict(type="AdamW", lr=1e-2, weight_decay=0.05))
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optim"])
    for i in range(3, 5):
        wrapper.update_params(_loss(model, i))
        resumed.update_params(_loss(resumed_model, i))
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert resumed.optimizer.state[next(resumed_model.parameters())]["step"] == 5


def test_nonfinite_loss_skips_before_backward_and_changes_nothing():
    _, _, model, wrapper = _pair(dict(type="AdamW", lr=1e-2, weight_decay=0.05))
    wrapper.update_params(_loss(model, 0))
    params = dict(model.named_parameters())  # not BN's running statistics: the forward pass updates those
    before = copy.deepcopy(({n: p.detach() for n, p in params.items()}, wrapper.optimizer.state_dict()))
    wrapper.update_params(_loss(model, 1) * float("nan"))
    assert wrapper.nonfinite_skips == 1
    for key, value in params.items():
        assert torch.equal(value, before[0][key])
    for i, state in wrapper.optimizer.state_dict()["state"].items():
        assert all(torch.equal(v, before[1]["state"][i][k]) for k, v in state.items())


def test_nonfinite_gradient_stops_stepping_at_its_parameter_and_says_what_already_stepped():
    _, _, model, wrapper = _pair(dict(type="AdamW", lr=1e-2, weight_decay=0.05))
    wrapper.update_params(_loss(model, 0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle = model.conv.weight.register_hook(lambda g: g * float("inf"))  # the first layer: its hook runs last
    records: list[str] = []
    catcher = logging.Handler()
    catcher.emit = lambda record: records.append(record.getMessage())
    MMLogger.get_current_instance().addHandler(catcher)
    try:
        wrapper.update_params(_loss(model, 1))
    finally:
        MMLogger.get_current_instance().removeHandler(catcher)
        handle.remove()
    assert wrapper.nonfinite_skips == 1 and wrapper.consecutive_nonfinite == 1
    assert torch.equal(model.conv.weight, before["conv.weight"]) and torch.isfinite(model.conv.weight).all()
    assert not torch.equal(model.head.weight, before["head.weight"])  # stepped before the bad gradient was seen
    assert all(p.grad is None for p in model.parameters())
    assert any("had already stepped in this backward" in r for r in records), records
    assert not any("parameters and optimizer state unchanged" in r for r in records)  # not true here


@pytest.mark.parametrize("key, extra", [
    ("clip_grad", dict(clip_grad=dict(max_norm=10.0))),
    ("accumulative_counts", dict(accumulative_counts=2)),
])
def test_clipping_and_accumulation_are_refused_at_check_time_naming_the_key(key, extra):
    from visdet.engine.preflight import check_config

    cfg = Config.fromfile(str(CONFIG))
    cfg.optim_wrapper.update(extra)
    with pytest.raises(OptimizerConfigError) as info:
        check_config(cfg)
    assert info.value.key == f"optim_wrapper.{key}" and "InBackwardOptimWrapper" in str(info.value)


def test_several_processes_are_refused_when_built(monkeypatch):
    monkeypatch.setattr(in_backward, "_distributed", lambda: True)
    with pytest.raises(OptimizerConfigError, match="several processes") as info:
        build_optim_wrapper(Net(), dict(type="InBackwardOptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)))
    assert info.value.key == "optim_wrapper.type"


@pytest.mark.parametrize("optimizer, words", [
    (dict(type="LBFGS", lr=1.0), "needs"),  # a closure: its own iteration
    (dict(type="Muon", lr=0.02, fallback=dict(type="AdamW", lr=1e-3)), "one parameter"),  # a hybrid of two
])
def test_optimizers_that_cannot_step_one_parameter_in_backward_are_refused(optimizer, words):
    with pytest.raises(OptimizerConfigError, match=words) as info:
        build_optim_wrapper(Net(), dict(type="InBackwardOptimWrapper", optimizer=optimizer))
    assert info.value.key == "optim_wrapper.optimizer"


def test_fsdp_refuses_the_wrapper_at_check_time():
    from visdet.engine.strategies.checks import check_strategy_config
    from visdet.engine.strategies.names import StrategyConfigError

    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small_fsdp.py"))
    cfg.optim_wrapper.type = "InBackwardOptimWrapper"
    with pytest.raises(StrategyConfigError, match="cannot run under FSDP") as info:
        check_strategy_config(cfg)
    assert info.value.key == "optim_wrapper.type"


def test_the_shipped_config_steps_the_detector_as_the_plain_wrapper_does_and_leaves_no_gradient(tmp_path):
    from visdet.datasets.embedded import EmbeddedDataSpec, ensure
    from visdet.registry import DATASETS, MODELS

    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
    root = str(tmp_path / "small")
    ensure(root, EmbeddedDataSpec.from_cfg({**cfg.embedded_data, "num_train": 2, "num_val": 1}))
    cfg.train_dataloader.dataset.data_root = root
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    torch.manual_seed(0)
    plain_model = MODELS.build(cfg.model)
    plain_model.train()
    model = copy.deepcopy(plain_model)
    optim_cfg = Config.fromfile(str(CONFIG)).optim_wrapper
    wrapper = build_optim_wrapper(model, optim_cfg)
    assert isinstance(wrapper, InBackwardOptimWrapper)
    plain = build_optim_wrapper(plain_model, {**optim_cfg, "type": "OptimWrapper"})
    torch.manual_seed(1)  # the RoI samplers draw at random: the same draws for both
    log_vars = train_step(model, batch, wrapper)
    torch.manual_seed(1)
    plain_log_vars = train_step(plain_model, batch, plain)
    assert math.isfinite(float(log_vars["loss"])) and float(log_vars["loss"]) == float(plain_log_vars["loss"])
    assert all(p.grad is None for p in model.parameters())
    for (name, a), b in zip(plain_model.named_parameters(), model.parameters()):
        assert torch.equal(a, b), name
