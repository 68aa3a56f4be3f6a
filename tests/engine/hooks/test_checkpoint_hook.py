"""visdet's CheckpointHook: a kill while the best checkpoint is replaced keeps the old one; temporaries are cleaned.

mmengine's hook deletes the previous best_*.pth before writing the new one, so a
kill during that write leaves no best checkpoint, only a hidden temporary that
nothing removes. The runs are real Runners in subprocesses (a SIGKILL cannot be
caught), with the hook built from ``type='CheckpointHook'`` as every config does.
"""
from __future__ import annotations

import signal
from pathlib import Path

import torch

from testutils import run_python

# A tiny model whose 'acc' is the epoch number: every validation is a new best.
# argv: WORK_DIR MAX_EPOCHS RESUME KILL_NAME KEEP: KILL_NAME is '' or 'NAME' / 'NAME#N', the file whose (N-th)
# rename into place is SIGKILLed; KEEP is max_keep_ckpts.
SCRIPT = '''
import os, signal, sys
import torch
from torch import nn
from mmengine.evaluator import BaseMetric
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from visdet.engine.runner import Runner
from visdet.registry import METRICS

work_dir, max_epochs, resume, kill_name = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
keep = int(sys.argv[5])
kill_name, _, kill_nth = kill_name.partition("#")
renames = {}
real_replace = os.replace

def replace(src, dst, *args, **kwargs):  # the atomic write's last step: the new file is complete, not in place
    name = os.path.basename(dst)
    renames[name] = renames.get(name, 0) + 1
    if kill_name and name == kill_name and renames[name] == int(kill_nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace


class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        y = self.linear(inputs)
        return {"loss": (y ** 2).mean()} if mode == "loss" else list(y)


@METRICS.register_module(force=True)
class EpochAsAccuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        return {"acc": float(MessageHub.get_current_instance().get_info("epoch"))}


loader = dict(dataset=[dict(inputs=torch.randn(2)) for _ in range(4)], batch_size=2,
              sampler=dict(type="DefaultSampler"),
              collate_fn=dict(type="default_collate"))
torch.manual_seed(0)
Runner(model=Tiny(), work_dir=work_dir, train_dataloader=loader, val_dataloader=loader,
       val_evaluator=dict(type="EpochAsAccuracy"), val_cfg=dict(),
       train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
       optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)), default_scope="visdet",
       default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=keep, save_best="acc",
                                          rule="greater")),
       custom_hooks=[dict(type="PlainCheckpointHook")], resume=resume).train()
'''


def _script(work_dir: Path, max_epochs: int, resume: bool, kill_name: str, keep: int = 2):
    argv = f"['x', {str(work_dir)!r}, '{max_epochs}', '{int(resume)}', {kill_name!r}, '{keep}']"
    code = f"import sys; sys.argv = {argv}\n"
    return run_python(code + SCRIPT, timeout=300)


def test_kill_while_replacing_the_best_checkpoint_keeps_the_old_one_and_the_temporary_is_cleaned(tmp_path):
    work = tmp_path / "work"
    killed = _script(work, 2, False, "best_acc_epoch_2.pth")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    stale = list(work.glob(".best_acc_epoch_2.pth.*.tmp"))
    assert len(stale) == 1 and stale[0].stat().st_size > 0  # the write that was cut
    assert (work / "best_acc_epoch_1.pth").is_file()  # mmengine had deleted it before writing the new one
    torch.load(work / "best_acc_epoch_1.pth", weights_only=True)

    resumed = _script(work, 3, True, "")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(work.glob(".*.tmp")), "the interrupted write's temporary is still there"
    assert "unfinished checkpoint write" in resumed.stdout + resumed.stderr
    # Epoch 3 is the next best: it replaces the kept epoch-1 best, which is then removed.
    assert sorted(p.name for p in work.glob("best_*.pth")) == ["best_acc_epoch_3.pth"]


def test_kill_while_saving_keeps_the_outdated_checkpoint_until_the_new_one_is_in_place(tmp_path):
    """max_keep_ckpts=1: mmengine removed epoch_1.pth before writing epoch_2.pth, so a kill then left none."""
    work = tmp_path / "work"
    killed = _script(work, 2, False, "epoch_2.pth", keep=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    torch.load(work / "epoch_1.pth", weights_only=True)
    assert (work / "last_checkpoint").read_text() == str(work / "epoch_1.pth")

    resumed = _script(work, 3, True, "", keep=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch_1.pth" in resumed.stdout + resumed.stderr  # resumed from the kept checkpoint
    assert sorted(p.name for p in work.glob("epoch_*.pth")) == ["epoch_3.pth"]  # the outdated ones went after
    assert (work / "last_checkpoint").read_text() == str(work / "epoch_3.pth")


def test_kill_while_writing_the_last_checkpoint_pointer_leaves_the_previous_pointer(tmp_path):
    """mmengine writes last_checkpoint with open(): a kill there left it empty and --resume found nothing."""
    work = tmp_path / "work"
    killed = _script(work, 2, False, "last_checkpoint#3")  # epoch 2 (epoch 1 writes it twice: its best re-save)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (work / "last_checkpoint").read_text() == str(work / "epoch_1.pth")
    torch.load(work / "epoch_2.pth", weights_only=True)  # the checkpoint itself was complete


def test_a_metric_that_does_not_improve_keeps_its_best(tmp_path):
    from visdet.engine.hooks import CheckpointHook

    hook = CheckpointHook(interval=1, save_best="acc", rule="greater")
    hook.best_ckpt_path = str(tmp_path / "best_acc_epoch_1.pth")

    class _Hub:
        runtime_info = {"best_score": 5.0}

        def get_info(self, key):
            return self.runtime_info[key]

    class _Runner:
        epoch, iter, message_hub = 2, 8, _Hub()

    hook._save_best_checkpoint(_Runner(), {"acc": 1.0})  # worse: nothing saved, nothing forgotten
    assert hook.best_ckpt_path == str(tmp_path / "best_acc_epoch_1.pth")
