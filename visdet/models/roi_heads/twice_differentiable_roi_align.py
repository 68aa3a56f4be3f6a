"""RoIAlign in plain tensor ops, so its backward can itself be differentiated (Hessian-vector products).

torchvision's ``roi_align`` is a compiled kernel whose backward is another
kernel with no derivative: ``backward(create_graph=True)`` through it works,
but differentiating the resulting gradients again (what SophiaH and AdaHessian
do for their Hutchinson estimate of the Hessian diagonal) raises
``RuntimeError: double backwards on roi_align not supported``. It is the one op
of visdet's Faster R-CNN that does (the backbone, FPN, heads, smooth-L1/L1 and
cross-entropy losses all have double backward; NMS, anchor matching and
sampling are not differentiated).

:func:`roi_align` here computes the same numbers as torchvision's
(``aligned`` and ``sampling_ratio`` semantics, including ``0`` = adaptive:
``ceil(roi_size / output_size)`` samples per bin, per RoI) with indexing and
arithmetic only, so autograd differentiates it any number of times. The output
is linear in the features, with bilinear weights that depend on the boxes
only; like torchvision's op it gives no gradient to the boxes (they are treated
as constants: its sampling positions go through ``floor``).

It is slower and needs more memory than the kernel (every sample point is
materialised), so :class:`~visdet.models.roi_heads.single_level_roi_extractor.SingleRoIExtractor`
uses it only while its ``double_backward`` flag is set: the second-order
driver sets it for the forward passes whose graph it differentiates twice.
"""
from __future__ import annotations

import torch

from visdet.models.roi_heads.roi_align_sampling import axis_samples, roi_geometry, sampling_grids


def _pool_group(feature: torch.Tensor, rois: torch.Tensor, spatial_scale: float, output_size: tuple[int, int],
                grid: tuple[int, int], aligned: bool) -> torch.Tensor:
    """(K, C, ph, pw) features of ``rois`` (K, 5), all sampled on the same (grid_h, grid_w) grid."""
    num, channels, height, width = feature.shape
    pooled_h, pooled_w = output_size
    grid_h, grid_w = grid
    start_w, start_h, roi_w, roi_h = roi_geometry(rois, spatial_scale, aligned)
    y_low, y_high, wy_low, wy_high = axis_samples(start_h, roi_h / pooled_h, grid_h, pooled_h, height)
    x_low, x_high, wx_low, wx_high = axis_samples(start_w, roi_w / pooled_w, grid_w, pooled_w, width)
    # Features as (N * H * W, C): one row per pixel, picked by advanced indexing (differentiable twice).
    table = feature.permute(0, 2, 3, 1).reshape(num * height * width, channels)
    base = rois[:, 0].long()[:, None, None] * (height * width)
    out = 0
    for ys, wy in ((y_low, wy_low), (y_high, wy_high)):
        for xs, wx in ((x_low, wx_low), (x_high, wx_high)):
            index = base + ys[:, :, None] * width + xs[:, None, :]  # (K, ph*gh, pw*gw)
            weight = (wy[:, :, None] * wx[:, None, :]).to(feature.dtype)
            out = out + table[index] * weight[..., None]  # (K, ph*gh, pw*gw, C)
    out = out.reshape(rois.shape[0], pooled_h, grid_h, pooled_w, grid_w, channels)
    return out.mean(dim=(2, 4)).permute(0, 3, 1, 2)


def roi_align(feature: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """torchvision's ``roi_align(input, boxes, ...)`` for (K, 5) boxes, twice differentiable in ``feature``.

    Args:
        feature: (N, C, H, W) feature map.
        rois: (K, 5) boxes as (batch index, x1, y1, x2, y2) in image coordinates.
        output_size: (h, w) or one int, the pooled size.
        spatial_scale: Feature-map size over image size (1 / stride).
        sampling_ratio: Samples per bin along each axis; ``<= 0``: ``ceil(roi size / output size)`` per RoI.
        aligned: Shift the boxes by half a pixel (the pixel model of mmcv's and torchvision's ``aligned=True``).

    Returns:
        (K, C, h, w) pooled features.
    """
    pooled = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    # Like torchvision's op: no gradient to the boxes; positions in at least float32 (as the kernel's accumulate).
    rois = rois.detach().to(torch.promote_types(feature.dtype, torch.float32))
    count, channels = rois.shape[0], feature.shape[1]
    out = feature.new_zeros(count, channels, *pooled)
    if count == 0:
        return out
    grids = sampling_grids(rois, spatial_scale, pooled, sampling_ratio, aligned)
    for grid in torch.unique(grids, dim=0).tolist():
        if grid[0] <= 0 or grid[1] <= 0:  # an empty or inverted box: no samples, zeros as in the kernel
            continue
        inds = torch.nonzero((grids == torch.tensor(grid, device=grids.device)).all(dim=1)).squeeze(1)
        out = out.index_put((inds,), _pool_group(feature, rois[inds], spatial_scale, pooled, tuple(grid), aligned))
    return out
