"""``DetLocalVisualizer``: ground-truth and predicted boxes drawn on an image, with class names, as MMDetection's.

mmengine's ``Visualizer`` draws primitives (boxes, texts) on a matplotlib
canvas and sends images to its backends (``LocalVisBackend`` writes PNGs,
TensorBoard...), but its ``add_datasample`` does nothing: what a detection
sample is (``gt_instances``/``pred_instances`` with boxes, labels and scores)
is the detection toolkit's to draw. This subclass draws it: the ground truth
on the left, the predictions above ``pred_score_thr`` on the right.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.visualization import Visualizer

from visdet.registry import VISUALIZERS

Color = str | tuple[int, int, int]


def class_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """One distinct, fixed RGB colour per class (evenly spaced hues), the same in every run."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_classes, 1), 0.85, 0.95))  # type: ignore[misc]
            for i in range(num_classes)]


@VISUALIZERS.register_module()
class DetLocalVisualizer(Visualizer):
    """Draw a ``DetDataSample``'s boxes with their class names (and scores) and send the image to the backends.

    Args:
        name: The instance name (``Visualizer.get_current_instance()`` finds it).
        image: An image to start with (RGB, uint8).
        vis_backends: Where ``add_image`` sends drawings (``LocalVisBackend`` writes
            ``<save_dir>/vis_data/vis_image/<name>_<step>.png``).
        save_dir: The backends' folder (the Runner passes the run's log dir).
        bbox_color: One colour for every box; None: the data set's ``palette``
            (``dataset_meta``) or one hue per class.
        text_color: Colour of the labels' text.
        line_width: Box edge width in pixels.
        alpha: Opacity of the box edges.
    """

    def __init__(self, name: str = "visualizer", image: np.ndarray | None = None,
                 vis_backends: Any = None, save_dir: str | None = None, bbox_color: Color | None = None,
                 text_color: Color = (200, 200, 200), line_width: int | float = 3, alpha: float = 0.8) -> None:
        super().__init__(name=name, image=image, vis_backends=vis_backends, save_dir=save_dir)
        self.bbox_color = bbox_color
        self.text_color = text_color
        self.line_width = line_width
        self.alpha = alpha

    def _colors(self, labels: Sequence[int], classes: Sequence[str]) -> list[Color]:
        if self.bbox_color is not None:
            return [self.bbox_color] * len(labels)
        palette = (self.dataset_meta or {}).get("palette") or class_palette(max(len(classes), max(labels) + 1))
        return [tuple(palette[label]) for label in labels]  # type: ignore[misc]

    def draw_instances(self, image: np.ndarray, instances: Any, classes: Sequence[str]) -> np.ndarray:
        """``image`` with each box of ``instances`` (``bboxes``, ``labels``, optional ``scores``) and its label."""
        self.set_image(image)
        if "bboxes" not in instances or len(instances.bboxes) == 0:
            return self.get_image()
        bboxes = np.asarray(instances.bboxes, dtype=np.float32).reshape(-1, 4)
        labels = [int(label) for label in instances.labels]
        colors = self._colors(labels, classes)
        self.draw_bboxes(bboxes, edge_colors=colors, alpha=self.alpha, line_widths=self.line_width)
        scores = [float(s) for s in instances.scores] if "scores" in instances else None
        texts = []
        for i, label in enumerate(labels):
            text = classes[label] if label < len(classes) else f"class {label}"
            texts.append(f"{text} {scores[i]:.2f}" if scores is not None else text)
        areas = (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])
        sizes = np.clip(7 + np.sqrt(np.maximum(areas, 0)) / 20, 7, 13).astype(int).tolist()
        self.draw_texts(texts, bboxes[:, :2] + self.line_width, colors=self.text_color, font_sizes=sizes,
                        bboxes=[dict(facecolor="black", alpha=0.8, pad=0.7, edgecolor="none")] * len(texts))
        return self.get_image()

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Any = None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: str | None = None, pred_score_thr: float = 0.3, step: int = 0) -> None:
        """Draw ``data_sample``'s ground truth (left) and predictions scoring above ``pred_score_thr`` (right).

        The drawing is shown (``show``), written to ``out_file`` (BGR, as
        ``mmcv.imwrite``), or else sent to every backend as ``name`` at ``step``.
        ``image`` is RGB in the coordinates of the boxes (the original image for
        ``pred_instances``, which the detector rescales back).
        """
        image = np.clip(image, 0, 255).astype(np.uint8)
        classes = tuple((self.dataset_meta or {}).get("classes") or ())
        if data_sample is not None:
            data_sample = data_sample.cpu()
        panels = []
        if draw_gt and data_sample is not None:
            gt = data_sample.get("gt_instances")
            panels.append(self.draw_instances(image, gt, classes) if gt is not None else image)
        if draw_pred and data_sample is not None:
            pred = data_sample.get("pred_instances")
            if pred is not None:
                panels.append(self.draw_instances(image, pred[pred.scores > pred_score_thr], classes))
            else:
                panels.append(image)
        drawn = np.concatenate(panels, axis=1) if panels else image
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            import mmcv

            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)
