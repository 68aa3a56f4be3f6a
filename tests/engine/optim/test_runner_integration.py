"""The constructor, Muon hybrid and CPU AMP inside mmengine's Runner: what tools/train.py will run."""
from __future__ import annotations

import json

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer


class Blobs(Dataset):
    """Four classes of 16x16 images told apart by a bright channel and half."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.x = torch.randn(n, 3, 16, 16, generator=g) * 0.5
        for i, label in enumerate(self.y.tolist()):
            self.x[i, label % 3, :, : 8 if label < 2 else 16] += 1.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.x[i], labels=self.y[i])


class ConvModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 32)
        self.fc_cls = nn.Linear(32, 4)

    def forward(self, inputs, labels, mode="tensor"):
        x = torch.relu(self.conv(torch.relu(self.bn(self.stem(inputs)))))
        logits = self.fc_cls(torch.relu(self.fc(x.mean((2, 3)))))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits.float(), labels))
        return logits


class RecordHook(Hook):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.losses: list[float] = []

    def before_run(self, runner) -> None:
        self.events.append("before_run")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(float(outputs["loss"].detach()))


def make_runner(tmp_path, optim_wrapper: dict, hook: RecordHook, max_iters: int = 40) -> Runner:
    return Runner(
        model=ConvModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Blobs(), sampler=dict(type="DefaultSampler", shuffle=True, seed=0),
            batch_size=16, collate_fn=dict(type="default_collate"), num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=optim_wrapper,
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.2, by_epoch=False, begin=0, end=5),
            dict(type="CosineAnnealingLR", by_epoch=False, begin=5, end=max_iters),
        ],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=max_iters, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=10)),
        custom_hooks=[hook],
        log_processor=dict(by_epoch=False),
        default_scope="visdet",
        randomness=dict(seed=0),
        experiment_name="runner_integration",
    )


def test_runner_trains_with_muon_hybrid_under_cpu_amp(tmp_path):
    hook = RecordHook()
    runner = make_runner(
        tmp_path,
        dict(
            type="AmpOptimWrapper",
            optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01, flatten_conv=True,
                           fallback=dict(type="AdamW", lr=3e-3, weight_decay=0.01)),
            paramwise_cfg=dict(norm_decay_mult=0.0),
            clip_grad=dict(max_norm=5.0),
        ),
        hook,
    )
    runner.train()
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16 and runner.optim_wrapper.loss_scaler is None
    assert isinstance(runner.optim_wrapper.optimizer, HybridOptimizer)
    first, last = sum(hook.losses[:5]) / 5, sum(hook.losses[-5:]) / 5
    assert last < 0.6 * first, hook.losses
    checkpoint = torch.load(tmp_path / "iter_40.pth", map_location="cpu", weights_only=False)
    assert set(checkpoint["optimizer"]["optimizers"]) == {"matrix", "fallback"}
    scalars = [json.loads(line) for line in next(tmp_path.rglob("scalars.json")).read_text().splitlines()]
    assert all("lr" in s and "grad_norm" in s for s in scalars if "loss" in s)


def test_runner_refuses_a_bad_optimizer_config_before_the_run_starts(tmp_path):
    hook = RecordHook()
    runner = make_runner(tmp_path, dict(optimizer=dict(type="AdamW", lr=1e-3, beta1=0.9)), hook)
    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper.optimizer: AdamW got an unknown argument 'beta1'"):
        runner.train()
    assert hook.events == [] and hook.losses == []
