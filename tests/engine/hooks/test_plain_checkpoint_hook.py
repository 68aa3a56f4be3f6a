"""Checkpoints load with torch.load(weights_only=True) and no allowlist, and resume restores the log history."""
from __future__ import annotations

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from visdet.engine.hooks.plain_checkpoint_hook import decode, encode


class _Tiny(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        y = self.linear(x)
        return {"loss": (y ** 2).mean()} if mode == "loss" else y


def _runner(work_dir, max_epochs: int, **kwargs) -> Runner:
    torch.manual_seed(0)
    return Runner(
        model=_Tiny(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=[torch.randn(2) for _ in range(8)], batch_size=2,
                              sampler=dict(type="DefaultSampler", shuffle=True),
                              collate_fn=dict(type="pseudo_collate")),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01)),
        param_scheduler=dict(type="LinearLR", by_epoch=False, begin=0, end=3),
        default_scope="visdet", randomness=dict(seed=0),
        custom_hooks=[dict(type="PlainCheckpointHook")], **kwargs)


def test_encode_decode_round_trip():
    buffer = HistoryBuffer([1.0, 2.5], [1, 2], max_length=7)
    state = {"log_scalars": {"train/loss": buffer}, "runtime_info": {"best": np.float64(0.5), "arr": np.arange(3)}}
    encoded = encode(state)
    assert isinstance(encoded["runtime_info"]["best"], float)
    assert isinstance(encoded["runtime_info"]["arr"], torch.Tensor)
    restored = decode(encoded)["log_scalars"]["train/loss"]
    assert isinstance(restored, HistoryBuffer) and restored.max_length == 7
    np.testing.assert_allclose(restored.data[0], [1.0, 2.5])
    np.testing.assert_allclose(restored.data[1], [1, 2])


def test_runner_checkpoints_need_no_unsafe_globals_and_resume(tmp_path):
    _runner(tmp_path, max_epochs=1).train()
    checkpoint = tmp_path / "epoch_1.pth"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint)) == []
    torch.load(checkpoint, weights_only=True)  # the safe default loads it whole

    resumed = _runner(tmp_path, max_epochs=2, resume=True, load_from=str(checkpoint), experiment_name="resumed")
    resumed.train()
    assert resumed.iter == 8
    history = resumed.message_hub.log_scalars["train/loss"]
    assert isinstance(history, HistoryBuffer) and len(history.data[0]) == 8  # 4 restored + 4 new
