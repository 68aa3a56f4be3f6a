"""The non-finite guard's bookkeeping: skipped steps are counted and logged, ``max_nonfinite_steps`` in a row
stop training with a message about the checkpoints, and the counters travel in the checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
from guard_helpers import NAN, loss_of, make, poison_grad
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.nonfinite import SKIPS_SCALAR, NonFiniteTrainingError
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper


def test_good_steps_after_skips_update_and_reset_the_consecutive_count(small_net):
    wrapper = make(small_net, max_nonfinite_steps=3)
    wrapper.update_params(loss_of(small_net) * NAN)
    handle = poison_grad(small_net.fc2.bias)
    wrapper.update_params(loss_of(small_net))
    handle.remove()
    assert (wrapper.nonfinite_skips, wrapper.consecutive_nonfinite) == (2, 2)
    weight = small_net.fc1.weight.detach().clone()
    wrapper.update_params(loss_of(small_net, 2))
    assert not torch.equal(weight, small_net.fc1.weight) and torch.isfinite(small_net.fc1.weight).all()
    assert (wrapper.nonfinite_skips, wrapper.consecutive_nonfinite) == (2, 0)
    # Two more bad steps do not reach 3 in a row: the good step reset the run.
    wrapper.update_params(loss_of(small_net) * NAN)
    wrapper.update_params(loss_of(small_net) * NAN)
    assert (wrapper.nonfinite_skips, wrapper.consecutive_nonfinite) == (4, 2)


@pytest.mark.parametrize("wrapper_cls", [OptimWrapper, AmpOptimWrapper], ids=["fp32", "amp-bf16-cpu"])
def test_max_nonfinite_steps_in_a_row_raise(small_net, wrapper_cls):
    wrapper = make(small_net, wrapper_cls, max_nonfinite_steps=3)
    wrapper.update_params(loss_of(small_net) * NAN)
    handle = poison_grad(small_net.conv.weight)
    wrapper.update_params(loss_of(small_net))
    handle.remove()
    with pytest.raises(NonFiniteTrainingError) as info:
        wrapper.update_params(loss_of(small_net) * float("inf"))
    message = str(info.value)
    assert message.startswith("3 optimizer steps in a row had a non-finite loss or gradients")
    for fragment in ("optim_wrapper.max_nonfinite_steps=3", "learning rate", "clip_grad", "data"):
        assert fragment in message, fragment
    assert (info.value.consecutive, info.value.total) == (3, 3)
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("wrapper_cls", [OptimWrapper, AmpOptimWrapper], ids=["fp32", "amp-bf16-cpu"])
def test_skip_counters_travel_in_the_checkpoint_and_a_resumed_streak_still_stops(small_net, wrapper_cls):
    wrapper = make(small_net, wrapper_cls, max_nonfinite_steps=3)
    wrapper.update_params(loss_of(small_net))
    wrapper.update_params(loss_of(small_net) * NAN)
    wrapper.update_params(loss_of(small_net) * NAN)
    saved = wrapper.state_dict()
    assert saved["nonfinite"] == {"total": 2, "consecutive": 2}
    torch.save(saved, buffer := __import__("io").BytesIO())
    buffer.seek(0)
    resumed = make(small_net, wrapper_cls, max_nonfinite_steps=3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # plain ints: weights_only-safe
    assert (resumed.nonfinite_skips, resumed.consecutive_nonfinite) == (2, 2)
    assert resumed.optimizer.state_dict()["state"].keys() == wrapper.optimizer.state_dict()["state"].keys()
    with pytest.raises(NonFiniteTrainingError) as info:  # the streak goes on across the resume
        resumed.update_params(loss_of(small_net) * NAN)
    assert (info.value.consecutive, info.value.total) == (3, 3)
    old = {k: v for k, v in saved.items() if k != "nonfinite"}  # a checkpoint from before the counters
    fresh = make(small_net, wrapper_cls, max_nonfinite_steps=3)
    fresh.load_state_dict(old)
    assert (fresh.nonfinite_skips, fresh.consecutive_nonfinite) == (0, 0)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3", None])
def test_invalid_max_nonfinite_steps_is_a_config_error_naming_the_key(small_net, value):
    with pytest.raises(OptimizerConfigError, match=r"^optim_wrapper\.max_nonfinite_steps: .*integer >= 1"):
        make(small_net, max_nonfinite_steps=value)
    with pytest.raises(OptimizerConfigError, match=r"^optim_wrapper\.max_nonfinite_steps: "):
        make(small_net, AmpOptimWrapper, max_nonfinite_steps=value)
    with pytest.raises(OptimizerConfigError, match=r"^optim_wrapper\.max_nonfinite_steps: "):  # before the model
        OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3), max_nonfinite_steps=value))


class Points(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


class TurnsNaN(BaseModel):
    """A linear regressor whose loss is NaN from its ``nan_from``-th training forward (0-based) on."""

    def __init__(self, nan_from: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.nan_from = nan_from
        self.calls = 0

    def forward(self, inputs, targets, mode="tensor"):
        out = self.fc(inputs)
        if mode != "loss":
            return out
        loss = nn.functional.mse_loss(out, targets)
        self.calls += 1
        return dict(loss=loss * NAN if self.calls > self.nan_from else loss)


def test_runner_stops_with_the_error_and_writes_no_checkpoint_after_it(tmp_path):
    nan_from, max_bad = 3, 2
    runner = Runner(
        model=TurnsNaN(nan_from),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Points(), sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=8, collate_fn=dict(type="default_collate"), num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=10),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=1e-2), max_nonfinite_steps=max_bad),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        log_processor=dict(by_epoch=False),
        default_scope="visdet",
        randomness=dict(seed=0),
        experiment_name="nonfinite_guard",
    )
    with pytest.raises(NonFiniteTrainingError, match=f"{max_bad} optimizer steps in a row"):
        runner.train()
    assert type(runner.optim_wrapper) is OptimWrapper
    last_iter = nan_from + max_bad - 1  # iterations 1..3 good, 4 skipped and saved, 5 raised
    saved = sorted(p.name for p in tmp_path.glob("iter_*.pth"))
    assert saved == sorted(f"iter_{i}.pth" for i in range(1, last_iter + 1))
    assert (tmp_path / "last_checkpoint").read_text().strip().endswith(f"iter_{last_iter}.pth")
    good = torch.load(tmp_path / f"iter_{nan_from}.pth", map_location="cpu", weights_only=False)
    last = torch.load(tmp_path / f"iter_{last_iter}.pth", map_location="cpu", weights_only=False)
    for name, value in last["state_dict"].items():
        assert torch.isfinite(value).all() and torch.equal(value, good["state_dict"][name]), name
    scalars = [json.loads(line) for line in next(tmp_path.rglob("scalars.json")).read_text().splitlines()]
    skips = {s["iter"]: s.get("nonfinite_skips") for s in scalars}
    assert skips[nan_from] is None and skips[last_iter] == 1, skips
    assert MessageHub.get_current_instance().get_scalar(SKIPS_SCALAR).current() == max_bad


@pytest.mark.parametrize("clip_grad", [None, dict(max_norm=10.0, norm_type=2), dict(type="value", clip_value=1.0)])
def test_the_stop_message_advises_clipping_only_when_the_config_does_not_clip(small_net, clip_grad):
    wrapper = make(small_net, clip_grad=clip_grad, max_nonfinite_steps=1)
    with pytest.raises(NonFiniteTrainingError) as info:
        wrapper.update_params(loss_of(small_net) * NAN)
    assert ("clip_grad" in str(info.value)) is (clip_grad is None), str(info.value)
    assert "float32 instead of" not in str(info.value)  # float32 training: no precision advice


class Diverges(BaseModel):
    """Loss normal for ``normal`` training forwards, then ``abnormal`` forwards 1e6 times larger, then NaN."""

    def __init__(self, normal: int, abnormal: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.normal, self.abnormal, self.calls = normal, abnormal, 0

    def forward(self, inputs, targets, mode="tensor"):
        out = self.fc(inputs)
        if mode != "loss":
            return out
        self.calls += 1
        loss = nn.functional.mse_loss(out, targets)
        if self.calls > self.normal + self.abnormal:
            return dict(loss=loss * NAN)
        return dict(loss=loss * 1e6 if self.calls > self.normal else loss)


def test_the_stop_message_says_which_checkpoints_hold_diverged_parameters(tmp_path):
    # Iterations 1-3 normal, 4-5 finite but 1e6 times the loss (applied), 6 and 7 NaN (skipped; 7 raises).
    runner = Runner(
        model=Diverges(normal=3, abnormal=2),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Points(), sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=8, collate_fn=dict(type="default_collate"), num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=10),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=1e-3), max_nonfinite_steps=2),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False)),
        log_processor=dict(by_epoch=False),
        default_scope="visdet",
        randomness=dict(seed=0),
        experiment_name="nonfinite_guard_checkpoints",
    )
    with pytest.raises(NonFiniteTrainingError) as info:
        runner.train()
    message = str(info.value)
    assert "The parameters were last updated at iteration 5; the loss they give (iteration 6) was already " \
           "non-finite (nan)" in message, message
    since = message.split("Checkpoints saved since hold these diverged parameters")[1].split(".pth.")[0] + ".pth"
    assert str(tmp_path / "iter_5.pth") in since and str(tmp_path / "iter_6.pth") in since
    assert str(tmp_path / "iter_4.pth") not in since
    assert (f"The last checkpoint saved before them is {tmp_path / 'iter_4.pth'} (after iteration 4); the loss its "
            "parameters give (iteration 5) was already abnormal") in message
    assert "it had already diverged too" in message
    assert "last checkpoint saved holds them" not in message  # the old, untrue reassurance
