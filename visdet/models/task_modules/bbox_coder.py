"""Box <-> regression-target encoding (mmdet's ``DeltaXYWHBBoxCoder``).

torchvision's ``BoxCoder`` uses per-coordinate weights (the reciprocal of
mmdet's stds) and no means or ``wh_ratio_clip``; mmdet configs specify
``target_means``/``target_stds``, so the coder is written to those semantics.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visdet.registry import TASK_UTILS


@TASK_UTILS.register_module()
class DeltaXYWHBBoxCoder:
    """Encode boxes as normalised ``(dx, dy, dw, dh)`` relative to priors, and back.

    Args:
        target_means: Means subtracted from deltas.
        target_stds: Stds dividing deltas.
        clip_border: Clip decoded boxes to the image in :meth:`decode`.
        wh_ratio_clip: Largest allowed ``exp(dw)`` is ``1 / wh_ratio_clip``.
    """

    encode_size = 4

    def __init__(self, target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clip_border: bool = True,
                 wh_ratio_clip: float = 16 / 1000, add_ctr_clamp: bool = False, ctr_clamp: int = 32,
                 use_box_type: bool = False) -> None:
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.max_ratio = abs(math.log(wh_ratio_clip))
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp

    def encode(self, priors: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """(N, 4) deltas that move ``priors`` onto ``gt`` (both (N, 4) x1y1x2y2)."""
        priors, gt = priors.float(), gt.float()
        pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
        pwh = priors[:, 2:] - priors[:, :2]
        gxy = (gt[:, :2] + gt[:, 2:]) * 0.5
        gwh = gt[:, 2:] - gt[:, :2]
        deltas = torch.cat([(gxy - pxy) / pwh, torch.log(gwh / pwh)], dim=1)
        means, stds = deltas.new_tensor(self.means), deltas.new_tensor(self.stds)
        return (deltas - means) / stds

    def decode(self, priors: torch.Tensor, deltas: torch.Tensor,
               max_shape: Sequence[int] | None = None) -> torch.Tensor:
        """Boxes from ``priors`` (N, 4) and ``deltas`` (N, 4 * C); clipped to ``max_shape`` (h, w)."""
        num = deltas.size(0)
        d = deltas.reshape(num, deltas.size(-1) // 4, 4)
        d = d * d.new_tensor(self.stds) + d.new_tensor(self.means)
        p = priors.reshape(num, 1, 4).to(d.dtype)
        pxy = (p[..., :2] + p[..., 2:]) * 0.5
        pwh = p[..., 2:] - p[..., :2]
        dxy_wh = pwh * d[..., :2]
        dwh = d[..., 2:]
        if self.add_ctr_clamp:
            dxy_wh = dxy_wh.clamp(-self.ctr_clamp, self.ctr_clamp)
            dwh = dwh.clamp(max=self.max_ratio)
        else:
            dwh = dwh.clamp(-self.max_ratio, self.max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border and max_shape is not None:
            h, w = max_shape[0], max_shape[1]
            boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                                 boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], dim=-1)
        return boxes.reshape(num, deltas.size(-1))
