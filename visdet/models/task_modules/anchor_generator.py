"""Anchors over a feature pyramid, laid out as mmdet's ``AnchorGenerator`` lays them out.

torchvision's ``AnchorGenerator`` rounds base anchors and orders them
differently; mmdet configs (and heads trained with them) expect mmdet's
layout: per level, location-major then anchor, base anchors centred on the
cell's top-left corner (``center_offset=0``), ratio-major over ``ratios x scales``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from visdet.models.errors import ModelConfigError
from visdet.registry import TASK_UTILS

_KEY = "model.rpn_head.anchor_generator"


@TASK_UTILS.register_module()
class AnchorGenerator:
    """Anchors of ``base_size * scale`` with aspect ``h/w = ratio`` at every cell of every level.

    Args:
        strides: Stride of each level (pixels per feature cell).
        ratios: Height/width ratios.
        scales: Anchor sizes in units of the level's base size (``octave_base_scale``
            and ``scales_per_octave`` may be given instead).
        base_sizes: Base size per level; defaults to the strides.
        center_offset: Cell offset of anchor centres (0 is mmdet's default).
    """

    def __init__(self, strides: Sequence[int | Sequence[int]], ratios: Sequence[float],
                 scales: Sequence[float] | None = None, base_sizes: Sequence[int] | None = None,
                 scale_major: bool = True, octave_base_scale: float | None = None,
                 scales_per_octave: int | None = None, centers: Sequence | None = None,
                 center_offset: float = 0.0) -> None:
        if centers is not None:
            raise ModelConfigError("explicit 'centers' are not supported; remove the key", f"{_KEY}.centers")
        if not 0 <= center_offset <= 1:
            raise ModelConfigError(f"center_offset must be in [0, 1], got {center_offset}", f"{_KEY}.center_offset")
        self.strides = [(s, s) if isinstance(s, (int, float)) else tuple(s) for s in strides]
        self.base_sizes = list(base_sizes) if base_sizes is not None else [min(s) for s in self.strides]
        if len(self.base_sizes) != len(self.strides):
            raise ModelConfigError(f"needs one base size per stride ({len(self.strides)}), got {len(self.base_sizes)}",
                                   f"{_KEY}.base_sizes")
        if scales is not None and octave_base_scale is not None:
            raise ModelConfigError("give either 'scales' or 'octave_base_scale'/'scales_per_octave', not both", _KEY)
        if scales is not None:
            self.scales = torch.tensor(scales, dtype=torch.float32)
        elif octave_base_scale is not None and scales_per_octave is not None:
            octave = torch.tensor([2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
            self.scales = octave * octave_base_scale
        else:
            raise ModelConfigError("give 'scales' (e.g. [8]) or 'octave_base_scale' and 'scales_per_octave'", _KEY)
        self.ratios = torch.tensor(ratios, dtype=torch.float32)
        self.scale_major = scale_major
        self.center_offset = center_offset
        self.base_anchors = [self._base_anchors(size) for size in self.base_sizes]
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_anchors(self) -> list[int]:
        """Anchors per feature cell, per level."""
        return [a.size(0) for a in self.base_anchors]

    def _base_anchors(self, base_size: float) -> torch.Tensor:
        """(A, 4) anchors centred on the cell's offset point."""
        ctr = self.center_offset * base_size
        h_ratios = torch.sqrt(self.ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (base_size * w_ratios[:, None] * self.scales[None, :]).reshape(-1)
            hs = (base_size * h_ratios[:, None] * self.scales[None, :]).reshape(-1)
        else:
            ws = (base_size * self.scales[:, None] * w_ratios[None, :]).reshape(-1)
            hs = (base_size * self.scales[:, None] * h_ratios[None, :]).reshape(-1)
        return torch.stack([ctr - 0.5 * ws, ctr - 0.5 * hs, ctr + 0.5 * ws, ctr + 0.5 * hs], dim=-1)

    def single_level_grid_priors(self, featmap_size: tuple[int, int], level: int, dtype: torch.dtype = torch.float32,
                                 device: torch.device | str = "cpu") -> torch.Tensor:
        """(H * W * A, 4) anchors of one level, location-major."""
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level]
        base = self.base_anchors[level].to(device=device, dtype=dtype)
        shift_x = torch.arange(feat_w, device=device, dtype=dtype) * stride_w
        shift_y = torch.arange(feat_h, device=device, dtype=dtype) * stride_h
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)

    def grid_priors(self, featmap_sizes: Sequence[tuple[int, int]], dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Anchors of every level; cached by feature sizes, since every batch of one size reuses them."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"got {len(featmap_sizes)} feature maps for {self.num_levels} anchor strides; "
                             f"model.neck.num_outs must equal len(model.rpn_head.anchor_generator.strides)")
        key = (tuple(tuple(int(v) for v in s) for s in featmap_sizes), dtype, str(device))
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 32:  # many distinct input sizes: keep memory bounded
                self._cache.clear()
            cached = [self.single_level_grid_priors(tuple(s), i, dtype, device) for i, s in enumerate(featmap_sizes)]
            self._cache[key] = cached
        return cached
