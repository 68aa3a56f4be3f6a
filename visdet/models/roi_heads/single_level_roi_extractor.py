"""Pool a fixed-size feature for each RoI from the one FPN level matching its scale.

The level rule is mmdet's (``floor(log2(sqrt(area) / finest_scale))``), not
torchvision's ``MultiScaleRoIAlign`` rule (canonical 224 at level 4), so that
mmdet configs behave as documented; pooling has the semantics of torchvision's
``roi_align`` (mmcv-lite has no compiled ops), with ``aligned=True`` like mmcv's
RoIAlign. On the CPU all levels are pooled in one sparse matrix product
(:mod:`~visdet.models.roi_heads.sparse_roi_align`: the same numbers, and a
multi-threaded backward where torchvision's is single-threaded); elsewhere
torchvision's kernel runs per level.

torchvision's kernel has no double backward; while ``double_backward`` is set
(by the second-order optimizers' driver, for the forward passes whose gradients
it differentiates again) the same pooling runs in plain tensor ops instead
(:mod:`~visdet.models.roi_heads.twice_differentiable_roi_align`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from torchvision.ops import roi_align

from visdet.models.errors import ModelConfigError
from visdet.models.roi_heads import twice_differentiable_roi_align
from visdet.models.roi_heads.sparse_roi_align import multi_level_roi_align
from visdet.registry import MODELS

_KEY = "model.roi_head.bbox_roi_extractor"


@MODELS.register_module()
class SingleRoIExtractor(BaseModule):
    """RoIAlign on the level each RoI maps to.

    Args:
        roi_layer: ``dict(type='RoIAlign', output_size=7, sampling_ratio=0, aligned=True)``.
        out_channels: Channels of the features.
        featmap_strides: Stride of each level used.
        finest_scale: RoIs smaller than this (sqrt of area) go to the finest level.

    Attributes:
        double_backward: Pool with the twice-differentiable RoIAlign (same
            numbers, slower) instead of torchvision's kernel. Off by default;
            visdet's second-order driver turns it on around the forward passes
            it runs with ``create_graph=True``.
        sparse_on_cpu: Pool CPU features with the sparse-matrix RoIAlign
            (default) rather than torchvision's kernel; the two agree to float
            rounding. ``benchmarks/detector_speed.py`` turns it off to show that.
    """

    double_backward: bool = False
    sparse_on_cpu: bool = True

    def __init__(self, roi_layer: dict, out_channels: int, featmap_strides: Sequence[int],
                 finest_scale: int = 56, init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg)
        layer = dict(roi_layer)
        layer_type = layer.pop("type", "RoIAlign")
        if layer_type != "RoIAlign":
            raise ModelConfigError(f"type {layer_type!r} is not supported; use 'RoIAlign'", f"{_KEY}.roi_layer.type")
        size = layer.pop("output_size", 7)
        self.output_size = (size, size) if isinstance(size, int) else tuple(size)
        self.sampling_ratio = int(layer.pop("sampling_ratio", 0))
        self.aligned = bool(layer.pop("aligned", True))
        layer.pop("pool_mode", None)
        layer.pop("use_torchvision", None)
        if layer:
            raise ModelConfigError(f"unknown keys {sorted(layer)}; RoIAlign takes output_size, sampling_ratio, "
                                   "aligned", f"{_KEY}.roi_layer")
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale

    @property
    def num_inputs(self) -> int:
        return len(self.featmap_strides)

    def map_roi_levels(self, rois: torch.Tensor, num_levels: int) -> torch.Tensor:
        """Level index of each RoI (K, 5) by its scale."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(min=0, max=num_levels - 1).long()

    def forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """(K, C, h, w) features of ``rois`` (K, 5: batch index, x1, y1, x2, y2)."""
        num_levels = len(feats)
        if rois.size(0) == 0:
            return feats[0].new_zeros(rois.size(0), self.out_channels, *self.output_size)
        if num_levels > 1:
            levels = self.map_roi_levels(rois, num_levels)
        else:
            levels = rois.new_zeros(len(rois), dtype=torch.long)
        if feats[0].device.type == "cpu" and self.sparse_on_cpu and not self.double_backward:
            return multi_level_roi_align(feats, rois, levels, self.output_size,
                                         [1.0 / s for s in self.featmap_strides[:num_levels]], self.sampling_ratio,
                                         self.aligned)
        pool = twice_differentiable_roi_align.roi_align if self.double_backward else roi_align
        out = feats[0].new_zeros(rois.size(0), self.out_channels, *self.output_size)
        if num_levels == 1:
            return pool(feats[0], rois, self.output_size, 1.0 / self.featmap_strides[0],
                             self.sampling_ratio, self.aligned)
        for i in range(num_levels):
            inds = torch.nonzero(levels == i).squeeze(1)
            if inds.numel() > 0:
                out[inds] = pool(feats[i], rois[inds], self.output_size, 1.0 / self.featmap_strides[i],
                                      self.sampling_ratio, self.aligned)
        return out
