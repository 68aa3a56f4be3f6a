"""Normalise, pad and batch images for detection, recording the padded shapes.

mmengine's ``ImgDataPreprocessor`` does the work (BGR->RGB, mean/std, padding
to a multiple of ``pad_size_divisor``, stacking); detection heads also need to
know each image's padded shape and the batch's shape, which mmdet writes into
every data sample's metainfo. That bookkeeping is all this class adds.
"""
from __future__ import annotations

import math

from mmengine.model import ImgDataPreprocessor

from visdet.registry import MODELS


@MODELS.register_module()
class DetDataPreprocessor(ImgDataPreprocessor):
    """``ImgDataPreprocessor`` that adds ``pad_shape`` and ``batch_input_shape`` to each sample.

    Args:
        mean, std: Per-channel normalisation (after channel conversion).
        pad_size_divisor: Pad height and width up to a multiple of this.
        pad_value: Padding value.
        bgr_to_rgb, rgb_to_bgr: Channel order conversion.
        boxtype2tensor: Accepted for mmdet configs; boxes are always tensors here.
    """

    def __init__(self, mean=None, std=None, pad_size_divisor: int = 1, pad_value: float = 0,
                 bgr_to_rgb: bool = False, rgb_to_bgr: bool = False, boxtype2tensor: bool = True,
                 non_blocking: bool = False) -> None:
        super().__init__(mean=mean, std=std, pad_size_divisor=pad_size_divisor, pad_value=pad_value,
                         bgr_to_rgb=bgr_to_rgb, rgb_to_bgr=rgb_to_bgr, non_blocking=non_blocking)

    def _pad_shapes(self, inputs) -> list[tuple[int, int]]:
        """Each image's own shape padded to the divisor (mmdet's ``pad_shape``)."""
        div = self.pad_size_divisor
        if isinstance(inputs, (list, tuple)):
            shapes = [tuple(img.shape[-2:]) for img in inputs]
        else:
            shapes = [tuple(inputs.shape[-2:])] * inputs.shape[0]
        return [(int(math.ceil(h / div)) * div, int(math.ceil(w / div)) * div) for h, w in shapes]

    def forward(self, data: dict, training: bool = False) -> dict:
        """Batch ``data['inputs']`` and annotate ``data['data_samples']``."""
        pad_shapes = self._pad_shapes(data["inputs"])
        data = super().forward(data, training)
        samples = data.get("data_samples")
        if samples is not None:
            batch_input_shape = tuple(data["inputs"].shape[-2:])
            for sample, pad_shape in zip(samples, pad_shapes):
                sample.set_metainfo(dict(batch_input_shape=batch_input_shape, pad_shape=pad_shape))
        return data
