"""CurvePlotHook draws the losses and validation metrics it saw into a PNG in the work dir."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import torch

from visdet.engine.hooks.curve_plot_hook import CurvePlotHook, _moving_average


def test_moving_average_is_trailing_and_same_length():
    assert _moving_average((1.0, 3.0, 5.0, 7.0), 2) == [1.0, 2.0, 4.0, 6.0]


def test_plots_losses_and_metrics_after_run(tmp_path):
    hook = CurvePlotHook(smooth=3)
    runner = SimpleNamespace(iter=0, work_dir=str(tmp_path))
    for i in range(30):
        runner.iter = i
        hook.after_train_iter(runner, i, outputs={"loss": torch.tensor(2.0 / (i + 1)),
                                                  "loss_cls": 1.0 / (i + 1), "acc": 50.0})
        if i % 10 == 9:
            hook.after_val_epoch(runner, metrics={"coco/bbox_mAP": i / 40, "coco/bbox_mAP_50": i / 30})
    assert set(hook.losses) == {"loss", "loss_cls"}  # accuracy is not a loss
    assert [v for _, v in hook.metrics["coco/bbox_mAP"]] == [9 / 40, 19 / 40, 29 / 40]
    hook.after_run(runner)
    image = cv2.imread(str(tmp_path / "curves.png"))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 800
    assert np.unique(image.reshape(-1, 3), axis=0).shape[0] > 20  # lines, text and axes, not a blank canvas
    assert not list(tmp_path.glob(".*partial"))


def test_nothing_seen_writes_nothing(tmp_path):
    CurvePlotHook().after_run(SimpleNamespace(iter=0, work_dir=str(tmp_path)))
    assert not (tmp_path / "curves.png").exists()
