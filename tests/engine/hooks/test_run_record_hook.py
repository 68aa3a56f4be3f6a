"""RunRecordHook: measured optimizer-state bytes, and a record that survives a checkpoint round trip."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from timm.optim import Lookahead

from testutils import SmallNet, train_steps
from visdet.engine.hooks import RunRecordHook
from visdet.engine.hooks.run_record_hook import CHECKPOINT_KEY, optimizer_state_bytes, read_record


def _hand_count_adamw(model: torch.nn.Module) -> int:
    # torch's AdamW keeps exp_avg and exp_avg_sq (float32, one value per weight) and a 0-d float32 step per tensor
    return sum(2 * p.numel() * 4 + 4 for p in model.parameters())


def test_state_bytes_of_adamw_equal_a_hand_count():
    model = SmallNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert optimizer_state_bytes(optimizer) == 0  # no step yet: no state
    train_steps(model, optimizer, steps=2)
    assert optimizer_state_bytes(optimizer) == _hand_count_adamw(model)


def test_state_bytes_count_a_shared_storage_once():
    model = SmallNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_steps(model, optimizer, steps=1)
    state = optimizer.state[model.fc1.weight]
    state["exp_avg_view"] = state["exp_avg"].view(-1)  # a second name for the same buffer
    state["param_ref"] = model.fc1.weight.detach()  # the weight itself: the model's memory, not the optimizer's
    assert optimizer_state_bytes(optimizer) == _hand_count_adamw(model)


def test_state_bytes_walk_into_an_inner_optimizer():
    model = SmallNet()
    optimizer = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-3), k=1)
    train_steps(model, optimizer, steps=2)
    slow_weights = sum(p.numel() * 4 for p in model.parameters())  # Lookahead's float32 copy of every weight
    assert optimizer_state_bytes(optimizer) == _hand_count_adamw(model) + slow_weights


def _runner(tmp_path, model, wrapper, resume=False):
    hub = MessageHub.get_instance(f"run_record_test_{id(model)}_{resume}")
    return SimpleNamespace(iter=0, model=model, optim_wrapper=wrapper, message_hub=hub, work_dir=str(tmp_path),
                           _resume=resume)


def _train(hook, runner, model, wrapper, iters):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    for _ in range(iters):
        hook.before_train_iter(runner, 0)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        wrapper.update_params(loss)
        hook.after_train_iter(runner, 0, outputs={"loss": loss.detach()})
        runner.iter += 1


def test_record_continues_after_a_checkpoint_round_trip(tmp_path):
    model = SmallNet()
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    hook = RunRecordHook(interval=2)
    runner = _runner(tmp_path, model, wrapper)
    hook.before_train(runner)
    _train(hook, runner, model, wrapper, 3)
    hook.before_val(runner)
    hook.after_val_epoch(runner, {"coco/bbox_mAP": 0.25})
    checkpoint = {"meta": {"iter": 3}}
    hook.before_save_checkpoint(runner, checkpoint)
    _train(hook, runner, model, wrapper, 2)  # trained after the checkpoint, then killed: lost
    # The checkpoint holds plain types only: it loads with weights_only=True.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    saved = loaded[CHECKPOINT_KEY]
    assert [i["iter"] for i in saved["iterations"]] == [1, 2, 3]
    assert saved["optimizer_state_bytes"] == _hand_count_adamw(model)

    resumed = RunRecordHook(interval=2)
    runner2 = _runner(tmp_path, model, wrapper, resume=True)
    runner2.iter = 3
    resumed.after_load_checkpoint(runner2, loaded)
    resumed.before_train(runner2)
    _train(resumed, runner2, model, wrapper, 2)
    resumed.after_run(runner2)
    record = read_record(tmp_path)
    assert record["finished"] is True
    assert [i["iter"] for i in record["iterations"]] == [1, 2, 3, 4, 5]  # continued, the lost two retrained
    seconds = [i["train_s"] for i in record["iterations"]]
    assert seconds == sorted(seconds) and seconds[3] > saved["train_seconds"]  # training time carries on
    assert record["validations"] == saved["validations"] and record["validations"][0]["metrics"] == \
        {"coco/bbox_mAP": 0.25}
    assert record["resumed_at"] == [3]
    assert len(record["iter_seconds"]) == 1  # timed: iteration 3 only (the first two of each process are warm-up)
    assert record["optimizer_state_bytes"] == _hand_count_adamw(model)
    assert record["seconds_per_iter"] > 0 and record["peak_memory_mib"] > 0
    assert json.loads((tmp_path / "run_record.json").read_text()) == record


def test_loading_weights_without_resuming_starts_a_new_record(tmp_path):
    model = SmallNet()
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    hook = RunRecordHook()
    checkpoint = {"meta": {"iter": 3}, CHECKPOINT_KEY: {"iterations": [{"iter": 1, "loss": 1.0, "train_s": 0.1}]}}
    hook.after_load_checkpoint(_runner(tmp_path, model, wrapper, resume=False), checkpoint)  # load_from
    assert hook.record["iterations"] == []


def test_a_validation_a_kill_cut_off_is_made_when_the_run_resumes(tmp_path):
    from mmengine.runner import IterBasedTrainLoop

    model = SmallNet()
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)  # only what the hook reads: the validation schedule
    loop._max_iters, loop.val_begin, loop.val_interval = 8, 1, 2
    runs = []

    def resume(saved_validations):
        hook = RunRecordHook()
        runner = _runner(tmp_path, model, wrapper, resume=True)
        runner.iter, runner.train_loop, runner._val_loop = 2, loop, object()
        runner.logger = SimpleNamespace(info=lambda message: None)
        runner.val_loop = SimpleNamespace(run=lambda: (runs.append(runner.iter),
                                                       hook.after_val_epoch(runner, {"coco/bbox_mAP": 0.1})))
        snapshot = {**RunRecordHook._empty(), "validations": saved_validations,
                    "iterations": [{"iter": 1, "loss": 1.0, "train_s": 0.1}, {"iter": 2, "loss": 1.0, "train_s": 0.2}]}
        hook.after_load_checkpoint(runner, {"meta": {"iter": 2}, CHECKPOINT_KEY: snapshot})
        hook.before_train(runner)
        hook.before_train_epoch(runner)
        return hook.record

    # Saved at iteration 2, killed before validating it: validated on resume, from the checkpoint's weights.
    assert [v["iter"] for v in resume([])["validations"]] == [2] and runs == [2]
    # Validated before the kill (the record on disk has it): not again.
    (tmp_path / "run_record.json").write_text(json.dumps({"validations": [
        {"iter": 2, "train_s": 0.2, "metrics": {"coco/bbox_mAP": 0.1}}]}))
    assert [v["iter"] for v in resume([])["validations"]] == [2] and runs == [2]
