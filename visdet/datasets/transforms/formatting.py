"""``PackDetInputs``: the last transform, turning a results dict into model input.

Written here because mmcv-lite has no detection packer (it is MMDetection's).
Output: ``dict(inputs=uint8 tensor (3, H, W) BGR as loaded, contiguous,
data_samples=DetDataSample)`` whose ``gt_instances`` holds ``bboxes`` (float32
(N, 4)) and ``labels`` (int64 (N,)) of the non-ignored boxes and whose
metainfo holds ``meta_keys`` present in the results.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData

from visdet.registry import TRANSFORMS
from visdet.structures import DetDataSample

DEFAULT_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction')


@TRANSFORMS.register_module()
class PackDetInputs(BaseTransform):
    """Pack image, boxes and metainfo into ``dict(inputs, data_samples)``.

    Boxes whose ``gt_ignore_flags`` is set (COCO crowd) are dropped. Meta keys
    absent from the results (e.g. ``flip`` without a ``RandomFlip``) are skipped.
    """

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        if isinstance(meta_keys, str) or not all(isinstance(k, str) for k in meta_keys):
            raise ValueError(f'PackDetInputs: `meta_keys` must be a tuple of key names, got {meta_keys!r}.')
        self.meta_keys = tuple(meta_keys)

    @staticmethod
    def _image_tensor(img: np.ndarray) -> torch.Tensor:
        if img.ndim == 2:
            img = img[..., None]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def transform(self, results: dict) -> dict:
        if results.get('img') is None:
            raise KeyError("PackDetInputs needs 'img' in the sample; put LoadImageFromFile first in the pipeline.")
        packed: dict = {'inputs': self._image_tensor(results['img'])}

        sample = DetDataSample()
        if 'gt_bboxes' in results:
            boxes = np.asarray(results['gt_bboxes'], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(len(boxes))), dtype=np.int64)
            keep = ~np.asarray(results.get('gt_ignore_flags', np.zeros(len(boxes), bool)), dtype=bool)
            gt = InstanceData()
            gt.bboxes = torch.from_numpy(np.ascontiguousarray(boxes[keep]))
            gt.labels = torch.from_numpy(np.ascontiguousarray(labels[keep]))
            sample.gt_instances = gt
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        packed['data_samples'] = sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
