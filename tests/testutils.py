"""Shared test helpers: a small model and a way to run Python in a fresh process.

A plain module, not conftest: tests/datasets has its own conftest.py, and
``from testutils import ...`` would resolve to whichever was imported first.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (import-time behaviour needs one)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env,
    )


class SmallNet(torch.nn.Module):
    """Conv + BN + two linears; big enough that 8-bit state applies (>= 4096 values)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)  # BN follows, as in detectors
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc1 = torch.nn.Linear(8 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 4)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def free_port() -> int:
    """A TCP port nothing listens on now (for a torchrun master)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_options(data: str) -> list[str]:
    """--cfg-options values that point the small config at its own copy of the embedded data."""
    data = data.rstrip("/") + "/"
    return [f"embedded_data.root={data}", f"train_dataloader.dataset.data_root={data}",
            f"val_dataloader.dataset.data_root={data}", f"test_dataloader.dataset.data_root={data}",
            f"val_evaluator.ann_file={data}annotations/instances_val.json",
            f"test_evaluator.ann_file={data}annotations/instances_val.json"]


def dist_train(config: str, work_dir: Path, data: str, *flags: str, options: tuple[str, ...] = (),
               nproc: int = 2, hide_cuda: bool = True) -> subprocess.CompletedProcess:
    """tools/dist_train.sh (CUDA hidden by default: the CPU path on any machine); asserts a zero exit."""
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    if hide_cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(["bash", "tools/dist_train.sh", config, str(nproc), "--work-dir", str(work_dir), *flags,
                             "--cfg-options", *data_options(data), *options],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def run_log(work_dir: Path, index: int = -1) -> str:
    """The text log of one run in ``work_dir`` (the last by default); asserts there is one log: rank 0's."""
    runs = sorted(p for p in work_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d{8}_\d{6}", p.name))
    logs = list(runs[index].glob("*.log"))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def train_losses(log: str) -> list[float]:
    """The total loss of every logged epoch-loop training iteration."""
    return [float(v) for v in re.findall(r"Epoch\(train\).*? loss: (\S+)", log)]


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> list[float]:
    """``steps`` plain backward/step iterations of a fixed batch through a SmallNet-shaped model; the losses.

    A schedule-free optimizer is put in train mode first, as ScheduleFreeHook does in the Runner.
    """
    torch.manual_seed(1)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
