"""Writes a PNG of the training loss and validation mAP curves to the work dir at the end of a run.

mmengine records scalars (json, TensorBoard) but draws nothing; a user who
trains on a laptop wants one picture to see whether the run learned. The hook
keeps the numbers it needs in memory (a float per iteration), so it works
with or without a visualisation back-end, and draws with matplotlib's Agg
canvas (no display needed, no global backend switched).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from visdet.registry import HOOKS
from visdet.utils.figures import moving_average as _moving_average, save_png


@HOOKS.register_module()
class CurvePlotHook(Hook):
    """Plot the losses (total and components) per iteration and each validation's metrics.

    Args:
        filename: Written under the runner's work dir.
        metric_keys: Validation metrics to plot, as logged (``coco/bbox_mAP``...).
        smooth: Window of the moving average drawn over the raw loss.
    """

    priority = "VERY_LOW"

    def __init__(self, filename: str = "curves.png",
                 metric_keys: tuple[str, ...] = ("coco/bbox_mAP", "coco/bbox_mAP_50"), smooth: int = 20) -> None:
        self.filename = filename
        self.metric_keys = tuple(metric_keys)
        self.smooth = max(1, int(smooth))
        self.losses: dict[str, list[tuple[int, float]]] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: dict | None = None) -> None:
        for name, value in (outputs or {}).items():
            if name.startswith("loss"):
                value = value.detach() if isinstance(value, torch.Tensor) else value
                self.losses.setdefault(name, []).append((runner.iter + 1, float(value)))

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        for name in self.metric_keys:
            if metrics and name in metrics:
                self.metrics.setdefault(name, []).append((runner.iter, float(metrics[name])))

    def after_run(self, runner) -> None:
        if is_main_process() and (self.losses or self.metrics):
            self.plot(Path(runner.work_dir) / self.filename)

    def plot(self, path: Path) -> Path:
        """Draw both panels into ``path`` (atomically: a half-written PNG never appears)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 4.2), dpi=100)
        FigureCanvasAgg(figure)
        loss_ax, metric_ax = figure.subplots(1, 2)
        for name, points in self.losses.items():
            iters, values = zip(*points)
            smoothed = _moving_average(values, self.smooth)
            style = dict(linewidth=2.0) if name == "loss" else dict(linewidth=1.0, alpha=0.8)
            loss_ax.plot(iters, smoothed, label=name, **style)
        loss_ax.set(xlabel="iteration", ylabel=f"loss (moving average of {self.smooth})", title="training loss")
        loss_ax.set_yscale("log")
        loss_ax.grid(alpha=0.3)
        if self.losses:
            loss_ax.legend(fontsize=8)
        for name, points in self.metrics.items():
            iters, values = zip(*points)
            metric_ax.plot(iters, values, marker="o", label=name)
        metric_ax.set(xlabel="iteration", ylabel="value", title="validation", ylim=(0, 1))
        metric_ax.grid(alpha=0.3)
        if self.metrics:
            metric_ax.legend(fontsize=8)
        figure.tight_layout()
        return save_png(figure, path)

