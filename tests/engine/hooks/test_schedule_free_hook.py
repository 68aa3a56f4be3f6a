"""ScheduleFreeHook in a real Runner: eval-mode weights for validation and checkpoints, train mode to train, resume."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from visdet.engine.hooks.schedule_free import ScheduleFreeHook, schedule_free_optimizers


class Points(Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x @ torch.randn(6, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.x[i], targets=self.y[i])


class Regressor(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, inputs, targets, mode="tensor"):
        out = self.fc2(torch.relu(self.fc1(inputs)))
        if mode == "loss":
            return dict(loss=nn.functional.mse_loss(out, targets))
        return [dict(pred=out, targets=targets)]


class MSE(BaseMetric):
    def process(self, data_batch, data_samples) -> None:
        self.results += [nn.functional.mse_loss(s["pred"], s["targets"]).item() for s in data_samples]

    def compute_metrics(self, results) -> dict:
        return dict(mse=sum(results) / len(results))


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder(Hook):
    """Records what the hook's switching must guarantee, with the expected eval weights worked out
    independently: a deep copy of model and optimizer switched to eval mode by the optimizer itself."""

    priority = "NORMAL"  # after ScheduleFreeHook (VERY_HIGH), before CheckpointHook (VERY_LOW)

    def __init__(self) -> None:
        self.train_modes: list[bool] = []
        self.expected_eval: dict[int, dict[str, torch.Tensor]] = {}
        self.train_weights: dict[int, dict[str, torch.Tensor]] = {}
        self.val_weights: dict[int, dict[str, torch.Tensor]] = {}
        self.val_modes: list[bool] = []
        self.after_save: dict[int, dict[str, torch.Tensor]] = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        (optimizer,) = schedule_free_optimizers(runner)
        self.train_modes.append(optimizer.param_groups[0]["train_mode"])
        if runner.iter in self.expected_eval:  # the first iteration after a save
            self.after_save[runner.iter] = _weights(runner.model)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        (optimizer,) = schedule_free_optimizers(runner)
        step = runner.iter + 1
        self.train_weights[step] = _weights(runner.model)
        twin = copy.deepcopy({"model": runner.model, "optimizer": optimizer})
        twin["optimizer"].eval()
        self.expected_eval[step] = _weights(twin["model"])

    def before_val_epoch(self, runner) -> None:
        (optimizer,) = schedule_free_optimizers(runner)
        self.val_modes.append(optimizer.param_groups[0]["train_mode"])
        self.val_weights[runner.iter] = _weights(runner.model)


def make_runner(tmp_path, recorder: Recorder, max_iters: int = 8, resume: bool = False, hooks=None) -> Runner:
    # One batch is the whole data set, so every iteration (resumed or not) sees the same data.
    loader = dict(dataset=Points(), sampler=dict(type="DefaultSampler", shuffle=False),
                  batch_size=32, collate_fn=dict(type="default_collate"), num_workers=0)
    return Runner(
        model=Regressor(),
        work_dir=str(tmp_path),
        train_dataloader={**loader, "sampler": dict(type="InfiniteSampler", shuffle=False)},
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=4),
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=[MSE()],
        optim_wrapper=dict(optimizer=dict(type="AdamWScheduleFree", lr=0.05, warmup_steps=2)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=4, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=100)),
        custom_hooks=[dict(type="PlainCheckpointHook"),
                      *([dict(type="ScheduleFreeHook")] if hooks is None else hooks), recorder],
        log_processor=dict(by_epoch=False),
        default_scope="visdet",
        randomness=dict(seed=0),
        resume=resume,
        load_from=str(tmp_path / "iter_4.pth") if resume else None,
        experiment_name=f"schedule_free_{tmp_path.name}_{resume}_{id(recorder)}",  # mmengine keys singletons by it
    )


def _close(a: dict, b: dict, atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_checkpoints_and_validation_see_eval_weights_training_stays_in_train_mode(tmp_path):
    recorder = Recorder()
    runner = make_runner(tmp_path, recorder)
    runner.train()
    assert recorder.train_modes == [True] * 8  # every step in train mode, after each save and validation too
    assert recorder.val_modes == [False, False]  # validation after iterations 4 and 8 in eval mode
    for step in (4, 8):
        saved = torch.load(tmp_path / f"iter_{step}.pth", map_location="cpu", weights_only=True)
        expected = recorder.expected_eval[step]
        assert not _close(expected, recorder.train_weights[step], atol=1e-6)  # the two points differ
        assert _close(saved["state_dict"], expected, atol=1e-6), step
        assert _close(recorder.val_weights[step], expected, atol=1e-6), step
        assert all(not g["train_mode"] for g in saved["optimizer"]["param_groups"])  # state saved with eval weights
    # Back to the training point after the save and validation at iteration 4.
    assert _close(recorder.after_save[4], recorder.train_weights[4], atol=1e-6)
    # Training is over: the model holds the averaged weights.
    assert _close(_weights(runner.model), recorder.expected_eval[8], atol=1e-6)


def test_resume_continues_from_the_training_point(tmp_path):
    full = Recorder()
    make_runner(tmp_path, full).train()
    resumed = Recorder()
    runner = make_runner(tmp_path, resumed, resume=True)
    runner.train()
    assert resumed.train_modes == [True] * 4
    for step in (5, 8):
        assert _close(resumed.train_weights[step], full.train_weights[step], atol=1e-5), step
    assert _close(resumed.expected_eval[8], full.expected_eval[8], atol=1e-5)


def test_without_the_hook_schedule_free_training_fails_and_the_hook_is_a_no_op_for_adamw(tmp_path):
    with pytest.raises(Exception, match="train mode"):
        make_runner(tmp_path / "none", Recorder(), hooks=[]).train()
    runner = make_runner(tmp_path / "adamw", Recorder(), max_iters=1)
    runner.optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-3))
    hook = ScheduleFreeHook()
    hook.before_run(runner)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    before = _weights(runner.model)
    hook.before_train(runner)
    hook.before_val(runner)
    hook.after_train(runner)
    assert schedule_free_optimizers(runner) == [] and _close(_weights(runner.model), before)


def test_finds_a_schedule_free_optimizer_inside_the_muon_hybrid_and_a_wrapper_dict():
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapperDict

    from visdet.engine.optim.build.constructor import OptimWrapperConstructor

    model = Regressor()
    wrapper = OptimWrapperConstructor(dict(optimizer=dict(
        type="Muon", lr=0.02, fallback=dict(type="AdamWScheduleFree", lr=0.01))))(model)
    for holder in (wrapper, OptimWrapperDict(main=wrapper)):
        runner = SimpleNamespace(optim_wrapper=holder, _train_loop=None)
        (found,) = schedule_free_optimizers(runner)
        assert found is wrapper.optimizer.optimizers["fallback"]
    runner = SimpleNamespace(optim_wrapper=wrapper, _train_loop=None)
    hook = ScheduleFreeHook()
    hook.before_train(runner)
    assert found.param_groups[0]["train_mode"]
    for _ in range(3):  # the hybrid steps: Muon on the matrices, schedule-free AdamW on the biases
        wrapper.update_params(model(torch.randn(4, 6), torch.randn(4, 2), mode="loss")["loss"])
    bias_at_train_point = model.fc1.bias.detach().clone()
    hook.before_val(runner)
    assert not found.param_groups[0]["train_mode"]
    assert not torch.equal(model.fc1.bias, bias_at_train_point)  # the bias moved to the averaged point
    assert schedule_free_optimizers(SimpleNamespace(optim_wrapper=dict(optimizer=dict(type="AdamW")))) == []
