"""Logs the process's peak memory on CPU runs, where mmengine logs none.

mmengine's LogProcessor reports ``memory`` only for CUDA (peak allocated
tensor memory). A CPU user wants the same number -- how close the run is to
the machine's RAM -- so this hook puts the process's peak resident set size
(MB) under the same name; the LogProcessor then prints it with the losses.
"""
from __future__ import annotations

import resource
import sys

import torch
from mmengine.hooks import Hook

from visdet.registry import HOOKS


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@HOOKS.register_module()
class MemoryLogHook(Hook):
    """Adds ``memory`` (peak RSS, MB) to the training log when the model is not on CUDA."""

    priority = "NORMAL"  # runs before LoggerHook (BELOW_NORMAL), so the value is in this iteration's log

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if torch.cuda.is_available() and next(runner.model.parameters()).is_cuda:
            return  # mmengine logs CUDA memory itself
        if self.every_n_train_iters(runner, self.interval) or self.end_of_epoch(runner.train_dataloader, batch_idx):
            runner.message_hub.update_scalar("train/memory", round(peak_rss_mb()))
