"""DetVisualizationHook: predicted boxes drawn on val images at its interval and on every test image."""
from __future__ import annotations

import types
import uuid

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visdet.errors import ConfigError
from visdet.registry import HOOKS, VISUALIZERS
from visdet.structures import DetDataSample


@pytest.fixture
def setup(tmp_path):
    image = np.full((64, 96, 3), 100, np.uint8)
    path = tmp_path / "img_0001.jpg"
    cv2.imwrite(str(path), image)
    vis = VISUALIZERS.build(dict(type="DetLocalVisualizer", name=f"vis-{uuid.uuid4().hex}",
                                 vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path / "logs"),
                                 bbox_color=(0, 255, 0)))
    vis.dataset_meta = dict(classes=("a", "b"))
    data_sample = DetDataSample(metainfo=dict(img_path=str(path)))
    data_sample.pred_instances = InstanceData(bboxes=torch.tensor([[10.0, 10.0, 60.0, 50.0]]),
                                              scores=torch.tensor([0.8]), labels=torch.tensor([1]))
    runner = types.SimpleNamespace(iter=0, work_dir=str(tmp_path / "work"), timestamp="20260101_000000")
    return runner, [data_sample], tmp_path / "logs" / "vis_data" / "vis_image"


def test_val_images_at_the_interval_with_boxes(setup):
    runner, outputs, vis_dir = setup
    hook = HOOKS.build(dict(type="DetVisualizationHook", draw=True, interval=2, score_thr=0.3))
    for batch_idx in range(4):
        hook.after_val_iter(runner, batch_idx, None, outputs)
    assert sorted(p.name for p in vis_dir.iterdir()) == ["val_img_0.png", "val_img_2.png"]
    drawn = cv2.imread(str(vis_dir / "val_img_0.png"))
    assert drawn.shape == (64, 192, 3)  # the ground-truth panel (here the bare image) | the predictions
    pred = drawn[:, 96:]
    assert pred[30, 10, 1] > 200 and pred[30, 10, 0] < 80  # the green box's left edge
    assert abs(int(pred[30, 40, 1]) - 100) < 10  # the inside is the image
    assert abs(drawn[:, :96].astype(int) - 100).max() < 10  # nothing on the empty gt panel


def test_draw_false_draws_nothing(setup):
    runner, outputs, vis_dir = setup
    hook = HOOKS.build(dict(type="DetVisualizationHook", interval=1))  # MMDetection's default: draw=False
    hook.after_val_iter(runner, 0, None, outputs)
    hook.after_test_iter(runner, 0, None, outputs)
    assert not vis_dir.exists()


def test_test_images_go_to_test_out_dir(setup):
    runner, outputs, _ = setup
    hook = HOOKS.build(dict(type="DetVisualizationHook", draw=True, test_out_dir="drawn"))
    hook.after_test_iter(runner, 0, None, outputs)
    hook.after_test_iter(runner, 1, None, outputs)
    out = f"{runner.work_dir}/{runner.timestamp}/drawn/img_0001.jpg"
    drawn = cv2.imread(out)
    assert drawn is not None and drawn[30, 96 + 10, 1] > 200
    assert hook._test_index == 2


def test_bad_interval_is_a_config_error():
    with pytest.raises(ConfigError, match="interval"):
        HOOKS.build(dict(type="DetVisualizationHook", interval=0))


def test_draw_with_a_visualizer_that_draws_nothing_is_a_config_error():
    from mmengine.visualization import Visualizer

    Visualizer.get_instance(f"plain-{uuid.uuid4().hex}")  # the current instance: mmengine's, no add_datasample
    with pytest.raises(ConfigError, match="DetLocalVisualizer"):
        HOOKS.build(dict(type="DetVisualizationHook", draw=True))
    HOOKS.build(dict(type="DetVisualizationHook"))  # draw=False needs nothing
