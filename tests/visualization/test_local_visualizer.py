"""DetLocalVisualizer: ground truth and predictions drawn side by side, with class names, sent to the backends."""
from __future__ import annotations

import uuid

import cv2
import numpy as np
import torch
from mmengine.structures import InstanceData

from visdet.registry import VISUALIZERS
from visdet.structures import DetDataSample

CLASSES = ("rectangle", "ellipse")


def visualizer(tmp_path, **kwargs):
    vis = VISUALIZERS.build(dict(type="DetLocalVisualizer", name=f"vis-{uuid.uuid4().hex}",
                                 vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path), **kwargs))
    vis.dataset_meta = dict(classes=CLASSES)
    return vis


def sample() -> DetDataSample:
    data_sample = DetDataSample(metainfo=dict(img_path="x.jpg"))
    data_sample.gt_instances = InstanceData(bboxes=torch.tensor([[10.0, 10.0, 50.0, 40.0]]), labels=torch.tensor([0]))
    data_sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[20.0, 50.0, 70.0, 90.0], [60.0, 5.0, 90.0, 30.0]]),
        scores=torch.tensor([0.9, 0.1]), labels=torch.tensor([1, 0]))
    return data_sample


def test_gt_left_predictions_above_threshold_right(tmp_path):
    image = np.full((100, 100, 3), 128, np.uint8)
    vis = visualizer(tmp_path, bbox_color=(255, 0, 0), line_width=2)
    vis.add_datasample("val_img", image, data_sample=sample(), pred_score_thr=0.3, step=7)
    written = tmp_path / "vis_data" / "vis_image" / "val_img_7.png"
    drawn = cv2.imread(str(written))[..., ::-1]  # the backend writes BGR
    assert drawn.shape == (100, 200, 3)  # ground truth | predictions
    gt, pred = drawn[:, :100].astype(int), drawn[:, 100:].astype(int)
    red = lambda px: px[0] > 200 and px[1] < 80 and px[2] < 80  # noqa: E731
    assert red(gt[25, 10]) and red(gt[40, 30])  # the gt box's left and bottom edges
    assert not red(pred[25, 10])  # no gt on the prediction panel
    assert red(pred[70, 70]) and red(pred[90, 45])  # the 0.9 prediction's right and bottom edges
    assert not red(pred[15, 90]) and not red(pred[30, 75])  # the 0.1 one is below the threshold
    assert (np.abs(gt - 128).sum(axis=2) > 0).mean() < 0.5  # boxes and labels, not a repainted image


def test_class_names_and_palette_colours(tmp_path):
    """Without bbox_color each class has its own colour; the labels' text changes pixels inside the box."""
    image = np.zeros((100, 100, 3), np.uint8)
    vis = visualizer(tmp_path)
    data_sample = sample()
    vis.add_datasample("img", image, data_sample=data_sample, draw_gt=False, pred_score_thr=0.0)
    drawn = vis.get_image()
    assert drawn.shape == (100, 100, 3)  # predictions only
    assert tuple(drawn[70, 70]) != tuple(drawn[5, 90])  # the class-1 box's edge vs the class-0 box's top edge
    label_area = drawn[52:60, 23:60]  # where "ellipse 0.90" is written, at the box's top-left corner
    assert (label_area.sum(axis=2) > 0).any()


def test_out_file_is_written_instead_of_the_backends(tmp_path):
    image = np.full((100, 100, 3), 60, np.uint8)
    vis = visualizer(tmp_path / "backends")
    out = tmp_path / "out" / "a.png"
    vis.add_datasample("test_img", image, data_sample=sample(), out_file=str(out))
    assert cv2.imread(str(out)).shape == (100, 200, 3)
    assert not (tmp_path / "backends" / "vis_data" / "vis_image").exists()
