"""Where RoIAlign samples a feature map, and with what bilinear weights, as torchvision's CPU kernel does.

Both of visdet's own RoIAlign implementations (the sparse-matrix one used for
training on the CPU and the twice-differentiable one used for Hessian
estimates) need the same sample points and weights, with the kernel's rules at
the edges; they are computed here once, in tensor ops.
"""
from __future__ import annotations

import torch


def roi_geometry(rois: torch.Tensor, spatial_scale: float,
                 aligned: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(start_w, start_h, roi_w, roi_h)`` of (K, 5) ``rois`` on the map, as the kernel computes them."""
    offset = 0.5 if aligned else 0.0
    start_w = rois[:, 1] * spatial_scale - offset
    start_h = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_w
    roi_h = rois[:, 4] * spatial_scale - offset - start_h
    if not aligned:  # the legacy rule: malformed RoIs forced to 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    return start_w, start_h, roi_w, roi_h


def sampling_grids(rois: torch.Tensor, spatial_scale: float, pooled: tuple[int, int], sampling_ratio: int,
                   aligned: bool) -> torch.Tensor:
    """(K, 2) samples per bin along (h, w): ``sampling_ratio``, or ``ceil(roi size / pooled size)`` when <= 0.

    A grid of 0 or less (an empty or inverted box with the adaptive rule) means
    no samples: the kernel then outputs zeros for that RoI.
    """
    if sampling_ratio > 0:
        return torch.full((rois.shape[0], 2), sampling_ratio, dtype=torch.long, device=rois.device)
    _, _, roi_w, roi_h = roi_geometry(rois, spatial_scale, aligned)
    return torch.stack([torch.ceil(roi_h / pooled[0]), torch.ceil(roi_w / pooled[1])], dim=1).long()


def axis_samples(start: torch.Tensor, bin_size: torch.Tensor, grid: int, pooled: int,
                 size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low/high indices and their weights of the sample points along one axis, as torchvision's kernel.

    ``start``, ``bin_size``: (K,). Returns four (K, pooled * grid) tensors:
    low index, high index, weight of low, weight of high (0 outside the map).
    Positions follow the kernel's arithmetic (``start + bin * bin_size + (sub +
    0.5) * bin_size / grid``), so float32 results agree with it to rounding.
    """
    device, dtype = start.device, start.dtype
    bins = torch.arange(pooled, device=device, dtype=dtype)
    subs = torch.arange(grid, device=device, dtype=dtype) + 0.5
    pos = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
           + subs[None, None, :] * bin_size[:, None, None] / grid)
    pos = pos.reshape(start.shape[0], pooled * grid)
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    weight_low = (1.0 - frac) * inside
    weight_high = frac * inside
    return low, high, weight_low, weight_high
