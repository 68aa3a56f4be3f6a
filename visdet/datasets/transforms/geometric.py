"""``Resize`` and ``RandomFlip`` for detection, on top of mmcv-lite's.

mmcv's versions already resize/flip image and ``gt_bboxes``, set
``img_shape``, ``scale_factor`` (w, h), ``flip`` and ``flip_direction`` and
clip resized boxes to the image. What they get wrong or leave out for
detection, and is fixed here:

* mmcv's ``Resize`` multiplies float32 boxes by a float64 factor and returns
  float64 boxes; here boxes keep their dtype.
* both validate arguments with bare ``assert``s (e.g. ``RandomFlip(prob=1)``
  fails with "probs must be float"); here bad arguments raise ``ValueError``
  naming the argument, and integer probabilities are accepted.
"""
from __future__ import annotations

from collections.abc import Sequence

from mmcv.transforms import RandomFlip as _MMCVRandomFlip
from mmcv.transforms import Resize as _MMCVResize

from visdet.registry import TRANSFORMS

_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')


def _is_pair(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)


@TRANSFORMS.register_module()
class Resize(_MMCVResize):
    """Resize image and boxes to ``scale=(w, h)`` (``keep_ratio``: fit within it, as mmdet).

    Boxes are scaled by ``scale_factor`` and clipped to the new image when
    ``clip_object_border`` (default). Sets ``img_shape`` (h, w) and
    ``scale_factor`` (w_scale, h_scale).
    """

    def __init__(self, scale: int | tuple[int, int] | None = None,
                 scale_factor: float | tuple[float, float] | None = None, keep_ratio: bool = False,
                 clip_object_border: bool = True, backend: str = 'cv2', interpolation: str = 'bilinear') -> None:
        if scale is None and scale_factor is None:
            raise ValueError('Resize: set `scale` (w, h) or `scale_factor`; both are None.')
        if scale is not None and not (isinstance(scale, int) and scale > 0) and not _is_pair(scale):
            raise ValueError(f'Resize: `scale` must be a positive int or a (w, h) pair, got {scale!r}.')
        if isinstance(scale, list):
            scale = tuple(scale)
        if isinstance(scale_factor, (list, tuple)):
            if not _is_pair(scale_factor):
                raise ValueError(f'Resize: `scale_factor` must be a positive float or a (w, h) pair, '
                                 f'got {scale_factor!r}.')
            scale_factor = tuple(float(v) for v in scale_factor)
        elif isinstance(scale_factor, int) and not isinstance(scale_factor, bool):
            scale_factor = float(scale_factor)
        super().__init__(scale=scale, scale_factor=scale_factor, keep_ratio=keep_ratio,
                         clip_object_border=clip_object_border, backend=backend, interpolation=interpolation)

    def _resize_bboxes(self, results: dict) -> None:
        boxes = results.get('gt_bboxes')
        if boxes is None:
            return
        dtype = boxes.dtype
        super()._resize_bboxes(results)
        results['gt_bboxes'] = results['gt_bboxes'].astype(dtype, copy=False)


@TRANSFORMS.register_module()
class RandomFlip(_MMCVRandomFlip):
    """Flip image and boxes with probability ``prob`` (x1' = w - x2 for 'horizontal').

    Sets ``flip`` (bool) and ``flip_direction`` (None when not flipped).
    """

    def __init__(self, prob: float | Sequence[float] | None = None,
                 direction: str | Sequence[str] = 'horizontal', swap_seg_labels: Sequence | None = None) -> None:
        if isinstance(prob, (int, float)) and not isinstance(prob, bool):
            prob = float(prob)
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f'RandomFlip: `prob` must be in [0, 1], got {prob}.')
        elif isinstance(prob, (list, tuple)):
            prob = [float(p) for p in prob]
            if any(p < 0 for p in prob) or sum(prob) > 1:
                raise ValueError(f'RandomFlip: `prob` list must be >= 0 and sum to at most 1, got {prob}.')
        else:
            raise ValueError(f'RandomFlip: `prob` must be a float in [0, 1] (or one per direction), got {prob!r}.')
        directions = [direction] if isinstance(direction, str) else list(direction)
        bad = [d for d in directions if d not in _DIRECTIONS]
        if bad:
            raise ValueError(f'RandomFlip: `direction` {bad} not one of {list(_DIRECTIONS)}.')
        if isinstance(prob, list) and len(prob) != len(directions):
            raise ValueError(f'RandomFlip: {len(prob)} probabilities for {len(directions)} directions.')
        super().__init__(prob=prob, direction=direction if isinstance(direction, str) else directions,
                         swap_seg_labels=swap_seg_labels)
