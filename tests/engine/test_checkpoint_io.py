"""Checkpoints are written atomically and loaded with weights_only=True; bad files are named, never run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from testutils import REPO
from visdet.engine import checkpoint_io
from visdet.errors import CheckpointError


class _Payload:
    """Pickles as a call to os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "epoch_1.pth"
    checkpoint_io.atomic_write_bytes(b"old and complete", target)

    def crash(*args):
        raise KeyboardInterrupt  # as if the process were stopped between write and rename

    monkeypatch.setattr(checkpoint_io.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_io.atomic_write_bytes(b"new", target)
    assert target.read_bytes() == b"old and complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth"]  # no temporary left behind


def test_malicious_checkpoint_is_refused_and_its_payload_does_not_run(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        checkpoint_io.load_checkpoint_file(path, allow_unsafe=False)
    message = str(info.value)
    assert str(path) in message and "system" in message and "--allow-unsafe-checkpoint" in message
    assert not marker.exists()


def test_unsafe_objects_load_only_with_the_explicit_opt_in(tmp_path):
    from fractions import Fraction  # harmless, but not a tensor or plain container

    path = tmp_path / "fraction.pth"
    torch.save({"ratio": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="fractions.Fraction"):
        checkpoint_io.load_checkpoint_file(path, allow_unsafe=False)
    assert checkpoint_io.load_checkpoint_file(path, allow_unsafe=True)["ratio"] == Fraction(1, 3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "epoch_3.pth"
    torch.save({"state_dict": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        checkpoint_io.load_checkpoint_file(path)
    assert str(path) in str(info.value)


def test_install_routes_mmengine_saves_and_loads(tmp_path):
    from mmengine.fileio import get_file_backend
    from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

    checkpoint_io.install()
    assert checkpoint_io.is_installed()
    assert isinstance(get_file_backend(str(tmp_path)), checkpoint_io.AtomicLocalBackend)
    path = tmp_path / "ok.pth"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, str(path))
    assert torch.equal(_load_checkpoint(str(path))["state_dict"]["w"], torch.ones(3))
    torch.save({"meta": _Payload(tmp_path / "ran")}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError):
        _load_checkpoint(str(tmp_path / "evil.pth"))
    assert not (tmp_path / "ran").exists()


_TRAIN = textwrap.dedent("""
    import os, signal, sys, torch
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch import nn
    from visdet.engine import checkpoint_io

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
        real_write, saves = checkpoint_io.os.fdopen, []
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
        checkpoint_io.os.fdopen = fdopen
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
    checkpoint_io.load_checkpoint_file(work_dir / "iter_2.pth")  # complete and safe to load

    resumed = subprocess.run([sys.executable, str(script), str(work_dir), "0", "resume"], capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finished at 6" in resumed.stdout
    log = "\n".join(p.read_text() for p in work_dir.glob("*/*.log"))
    assert "resumed" in log.lower() and "iter_2.pth" in log
