"""Through mmengine, checkpoints are written atomically and loaded safely; a kill mid-save loses nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from testutils import REPO
from visdet.engine.checkpoint import atomic
from visdet.engine.checkpoint.install import install, is_installed
from visdet.engine.checkpoint.loading import load_checkpoint_file
from visdet.errors import CheckpointError


def test_install_routes_mmengine_saves_and_loads(tmp_path, payload):
    from mmengine.fileio import get_file_backend
    from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

    install()
    assert is_installed()
    assert isinstance(get_file_backend(str(tmp_path)), atomic.AtomicLocalBackend)
    path = tmp_path / "ok.pth"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, str(path))
    assert torch.equal(_load_checkpoint(str(path))["state_dict"]["w"], torch.ones(3))
    torch.save({"meta": payload(tmp_path / "ran")}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError):
        _load_checkpoint(str(tmp_path / "evil.pth"))
    assert not (tmp_path / "ran").exists()


_TRAIN = textwrap.dedent("""
    import os, signal, sys, torch
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch import nn
    from visdet.engine.checkpoint import atomic

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)
        def forward(self, inputs, data_samples=None, mode="tensor"):
            x = torch.stack(inputs) if isinstance(inputs, list) else inputs
            y = self.linear(x)
            return {"loss": (y ** 2).mean()} if mode == "loss" else y

    work_dir, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    if kill_at:  # SIGKILL in the middle of writing the kill_at-th checkpoint
        real_write, saves = atomic.os.fdopen, []
        def fdopen(fd, mode="r", *a, **k):
            handle = real_write(fd, mode, *a, **k)
            if "b" in mode and mode.startswith("w"):
                real = handle.write
                def write(data):
                    if len(data) > 1000:
                        saves.append(1)
                        if len(saves) == kill_at:
                            real(data[: len(data) // 2]); handle.flush()
                            os.kill(os.getpid(), signal.SIGKILL)
                    return real(data)
                handle.write = write
            return handle
        atomic.os.fdopen = fdopen
    torch.manual_seed(0)
    runner = Runner(
        model=Tiny(), work_dir=work_dir,
        train_dataloader=dict(dataset=[torch.randn(2) for _ in range(8)], batch_size=2,
                              sampler=dict(type="DefaultSampler", shuffle=False),
                              collate_fn=dict(type="pseudo_collate")),
        train_cfg=dict(by_epoch=False, max_iters=6),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False)),
        default_scope="visdet", custom_hooks=[dict(type="PlainCheckpointHook")], resume=resume,
        randomness=dict(seed=0))
    runner.train()
    print("finished at", runner.iter)
""")


def test_kill_during_a_save_keeps_the_last_complete_checkpoint_and_resume_uses_it(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(_TRAIN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    work_dir = tmp_path / "work"
    killed = subprocess.run([sys.executable, str(script), str(work_dir), "3", "fresh"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (work_dir / "iter_3.pth").exists()  # the half-written save never took the name
    assert (work_dir / "last_checkpoint").read_text().strip().endswith("iter_2.pth")
    load_checkpoint_file(work_dir / "iter_2.pth")  # complete and safe to load

    resumed = subprocess.run([sys.executable, str(script), str(work_dir), "0", "resume"], capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finished at 6" in resumed.stdout
    log = "\n".join(p.read_text() for p in work_dir.glob("*/*.log"))
    assert "resumed" in log.lower() and "iter_2.pth" in log
