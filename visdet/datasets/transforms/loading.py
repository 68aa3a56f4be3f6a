"""Image and annotation loading, on top of mmcv-lite's transforms.

mmcv registers its transforms in mmengine's root registry; the subclasses
here are registered under the same names in visdet's child registry, which
is searched first, so configs get these. Behaviour added on top of mmcv:

* ``LoadImageFromFile``: a missing, unreadable or corrupt image raises an
  error naming the file (mmcv raises ``AssertionError`` for undecodable bytes,
  which ``python -O`` even turns into a silent ``None`` image).
* ``LoadAnnotations``: also writes ``gt_ignore_flags`` (bool), so crowd boxes
  can be dropped when packing, as MMDetection does.
"""
from __future__ import annotations

import numpy as np
from mmcv.transforms import LoadAnnotations as _MMCVLoadAnnotations
from mmcv.transforms import LoadImageFromFile as _MMCVLoadImageFromFile

from visdet.registry import TRANSFORMS


class ImageLoadError(OSError):
    """An image listed by the dataset cannot be read or decoded; the message names the file."""


@TRANSFORMS.register_module()
class LoadImageFromFile(_MMCVLoadImageFromFile):
    """mmcv's loader (``img``, ``img_shape``, ``ori_shape``) with errors that name the file."""

    def transform(self, results: dict) -> dict | None:
        if 'img_path' not in results:
            raise KeyError("LoadImageFromFile needs 'img_path' in the sample; "
                           f'got keys {sorted(results)} (is it the first transform of the pipeline?)')
        path = results['img_path']
        try:
            out = super().transform(results)
        except FileNotFoundError as err:
            raise ImageLoadError(f'image file {path} does not exist (check the dataset\'s data_prefix.img '
                                 'and the file_name in the annotation file)') from err
        except AssertionError as err:  # mmcv: `assert img is not None, 'failed to load image'`
            raise ImageLoadError(f'image file {path} could not be decoded (empty, truncated or not an '
                                 'image)') from err
        except Exception as err:
            raise ImageLoadError(f'image file {path} could not be read: {type(err).__name__}: {err}') from err
        if out is None:  # only with ignore_empty=True: mmcv's documented "skip this sample"
            return None
        if out.get('img') is None:  # under python -O mmcv's assert is gone
            if self.ignore_empty:
                return None
            raise ImageLoadError(f'image file {path} could not be decoded (empty, truncated or not an image)')
        return out


@TRANSFORMS.register_module()
class LoadAnnotations(_MMCVLoadAnnotations):
    """mmcv's box/label loading plus ``gt_ignore_flags`` from each instance's ``ignore_flag``.

    Writes ``gt_bboxes`` float32 (N, 4) xyxy, ``gt_bboxes_labels`` int64 (N,)
    and ``gt_ignore_flags`` bool (N,).
    """

    def transform(self, results: dict) -> dict:
        if 'instances' not in results:
            raise KeyError("LoadAnnotations needs 'instances' in the sample (the dataset's parsed boxes); "
                           f'got keys {sorted(results)}')
        results = super().transform(results)
        if self.with_bbox:
            results['gt_ignore_flags'] = np.array(
                [bool(inst.get('ignore_flag', 0)) for inst in results['instances']], dtype=bool)
        return results
