"""``DetVisualizationHook``: predicted boxes drawn on validation and test images, as MMDetection's.

mmengine's hooks log scalars only; its ``NaiveVisualizationHook`` draws the
network input, not a detection. This hook reads each image from its file (the
predictions are in the original image's coordinates), hands it with its
``DetDataSample`` to the current visualizer (``DetLocalVisualizer`` draws the
boxes) and so to the visualizer's backends. MMDetection's keys and defaults:
``draw=False`` draws nothing, as there.
"""
from __future__ import annotations

import os
import os.path as osp
import warnings
from typing import Any

from mmengine.fileio import get
from mmengine.hooks import Hook
from mmengine.visualization import Visualizer

from visdet.registry import HOOKS


def read_rgb(path: str, backend_args: dict | None = None) -> Any:
    """The image file at ``path`` (any mmengine file backend) as an RGB uint8 array."""
    import mmcv

    return mmcv.imfrombytes(get(path, backend_args=backend_args), channel_order="rgb")


@HOOKS.register_module()
class DetVisualizationHook(Hook):
    """Draw the predictions of every ``interval``-th validation image and of every test image.

    Args:
        draw: Draw at all (MMDetection's default is False).
        interval: Validation: draw the images whose running index is a multiple of this.
        score_thr: Predictions scoring at most this are not drawn.
        show: Show each drawing in a window instead of sending it to the backends.
        wait_time: Seconds a shown window stays.
        test_out_dir: Testing: also write each drawing to ``<work_dir>/<timestamp>/<test_out_dir>/<image name>``.
        backend_args: How to read the images (mmengine file backends), as the data set's.
    """

    priority = "NORMAL"

    def __init__(self, draw: bool = False, interval: int = 50, score_thr: float = 0.3, show: bool = False,
                 wait_time: float = 0.0, test_out_dir: str | None = None, backend_args: dict | None = None) -> None:
        from visdet.errors import ConfigError

        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"must be a positive integer, got {interval!r}", "DetVisualizationHook.interval")
        self._visualizer: Visualizer = Visualizer.get_current_instance()
        if draw and type(self._visualizer).add_datasample is Visualizer.add_datasample:
            # mmengine's plain Visualizer accepts add_datasample and does nothing: nothing would be drawn.
            raise ConfigError(
                f"draw=True needs a visualizer that draws detections; the current one is mmengine's "
                f"{type(self._visualizer).__name__}, whose add_datasample does nothing. Set visualizer=dict("
                "type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')",
                "DetVisualizationHook.draw")
        self.draw = draw
        self.interval = interval
        self.score_thr = score_thr
        self.show = show
        if show:  # as MMDetection: a shown image is not also stored
            self._visualizer._vis_backends = {}
            warnings.warn("DetVisualizationHook(show=True): images are shown, not written by the backends",
                          stacklevel=2)
        self.wait_time = wait_time
        self.test_out_dir = test_out_dir
        self.backend_args = backend_args
        self._test_index = 0

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Draw the batch's first image when the running validation index is a multiple of ``interval``."""
        if not self.draw or not outputs:
            return
        step = runner.iter + batch_idx
        if step % self.interval:
            return
        sample = outputs[0]
        self._visualizer.add_datasample(
            osp.basename(sample.img_path) if self.show else "val_img", read_rgb(sample.img_path, self.backend_args),
            data_sample=sample, show=self.show, wait_time=self.wait_time, pred_score_thr=self.score_thr, step=step)

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Draw every test image; into ``test_out_dir`` too when it is set."""
        if not self.draw:
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            os.makedirs(out_dir, exist_ok=True)
        for sample in outputs or []:
            self._test_index += 1
            name = osp.basename(sample.img_path)
            self._visualizer.add_datasample(
                name if self.show else "test_img", read_rgb(sample.img_path, self.backend_args), data_sample=sample,
                show=self.show, wait_time=self.wait_time, pred_score_thr=self.score_thr,
                out_file=osp.join(out_dir, name) if out_dir else None, step=self._test_index)
