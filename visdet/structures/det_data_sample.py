"""``DetDataSample``: one image's annotations and predictions, as MMDetection passes them.

mmengine provides the generic containers (``BaseDataElement`` for metainfo plus
fields, ``InstanceData`` for per-object tensors); detection needs only fixed
names for three ``InstanceData`` fields, so this is a thin, typed subclass.

Boxes are plain ``(N, 4)`` float tensors in ``x1, y1, x2, y2`` pixel order
(mmdet's box-type classes are not needed for horizontal boxes). Metainfo keys
used across visdet: ``img_id``, ``img_path``, ``ori_shape`` (h, w),
``img_shape`` (h, w after resize), ``scale_factor`` (w_scale, h_scale),
``flip``, ``flip_direction``, ``pad_shape`` and ``batch_input_shape`` (h, w).
"""
from __future__ import annotations

from mmengine.structures import BaseDataElement, InstanceData


class DetDataSample(BaseDataElement):
    """Ground truth (``gt_instances``: bboxes, labels), predictions
    (``pred_instances``: bboxes, scores, labels) and RPN ``proposals`` of one image."""

    @property
    def gt_instances(self) -> InstanceData:
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData) -> None:
        self.set_field(value, "_gt_instances", dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self) -> None:
        del self._gt_instances

    @property
    def pred_instances(self) -> InstanceData:
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData) -> None:
        self.set_field(value, "_pred_instances", dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self) -> None:
        del self._pred_instances

    @property
    def proposals(self) -> InstanceData:
        return self._proposals

    @proposals.setter
    def proposals(self, value: InstanceData) -> None:
        self.set_field(value, "_proposals", dtype=InstanceData)

    @proposals.deleter
    def proposals(self) -> None:
        del self._proposals


SampleList = list[DetDataSample]
