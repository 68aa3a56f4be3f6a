"""RoIAlign over all FPN levels as one sparse matrix product: torchvision's numbers, a parallel backward.

Why by hand: on the CPU, torchvision's ``roi_align`` backward is a
single-threaded loop that scatters every sample's four bilinear weights into
the NCHW gradient one channel plane at a time; with 512 RoIs of 7x7 bins and 2x2
samples it took about a third of a Faster R-CNN training iteration on a 2-core
machine (``benchmarks/detector_speed.py`` prints the breakdown), and
torchvision's own detector pays the same. No library op does it faster.

RoIAlign is linear in the features: every output value is a weighted sum of
feature pixels, with weights that depend on the boxes only. So the pooling of
all RoIs, over all levels at once, is ``out = W @ table`` where ``table`` holds
every level's pixels as rows of C channels (channels-last) and ``W`` is a sparse
matrix (one row per RoI bin, 4 x samples entries) built from the same sample
points and weights as the kernel (:mod:`~visdet.models.roi_heads.roi_align_sampling`).
The backward is ``W.T @ grad``: a sparse-dense product that torch runs
multi-threaded and deterministically (each gradient row is summed by one thread).
Both products are ``torch`` CSR matmuls; the index arithmetic that builds ``W``
is a few vectorised ops and a sort.

Results equal the kernel's to float rounding (``tests/models/roi_heads/
test_sparse_roi_align.py`` holds forward and gradient to it over aligned/unaligned,
fixed/adaptive sampling and edge boxes). On CUDA torchvision's kernel is kept:
its atomics-based backward is fast there.
"""
from __future__ import annotations

from collections.abc import Sequence

import warnings

import torch

from visdet.models.roi_heads.roi_align_sampling import axis_samples, roi_geometry, sampling_grids


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from unsorted (row, col, value) entries; repeated entries stay separate (they add up)."""
    order = torch.argsort(rows, stable=True)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": the CSR matmul is what is used
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(crow, cols[order], values[order], shape, check_invariants=False)


def _level_entries(rois: torch.Tensor, roi_index: torch.Tensor, shape: Sequence[int], pixel_offset: int,
                   spatial_scale: float, pooled: tuple[int, int], grid: tuple[int, int],
                   aligned: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row (output bin), column (pixel) and weight of every bilinear tap of ``rois`` sampled on ``grid``."""
    _, _, height, width = shape
    pooled_h, pooled_w = pooled
    grid_h, grid_w = grid
    count = rois.shape[0]
    start_w, start_h, roi_w, roi_h = roi_geometry(rois, spatial_scale, aligned)
    y_low, y_high, wy_low, wy_high = axis_samples(start_h, roi_h / pooled_h, grid_h, pooled_h, height)
    x_low, x_high, wx_low, wx_high = axis_samples(start_w, roi_w / pooled_w, grid_w, pooled_w, width)
    # (K, ph, gh * 2): each bin's samples along y with their low and high taps; the same along x.
    ys = torch.stack([y_low, y_high], -1).reshape(count, pooled_h, grid_h * 2)
    wys = torch.stack([wy_low, wy_high], -1).reshape(count, pooled_h, grid_h * 2)
    xs = torch.stack([x_low, x_high], -1).reshape(count, pooled_w, grid_w * 2)
    wxs = torch.stack([wx_low, wx_high], -1).reshape(count, pooled_w, grid_w * 2)
    base = pixel_offset + rois[:, 0].long() * (height * width)
    # (K, ph, pw, taps_y, taps_x): the average over the bin's samples is folded into the weight.
    cols = base[:, None, None, None, None] + ys[:, :, None, :, None] * width + xs[:, None, :, None, :]
    values = wys[:, :, None, :, None] * wxs[:, None, :, None, :] / (grid_h * grid_w)
    bins = torch.arange(pooled_h * pooled_w, device=rois.device).reshape(1, pooled_h, pooled_w, 1, 1)
    rows = (roi_index[:, None, None, None, None] * (pooled_h * pooled_w) + bins).expand_as(cols)
    return rows.reshape(-1), cols.reshape(-1), values.reshape(-1)


class _SparsePooling(torch.autograd.Function):
    """``matrix @ table`` with the gradient ``transposed @ grad`` (the boxes, inside the matrix, get none)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        with torch.autocast(table.device.type, enabled=False):
            return matrix @ table

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        with torch.autocast(grad.device.type, enabled=False):
            return ctx.transposed @ grad.contiguous(), None, None


def multi_level_roi_align(feats: Sequence[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor,
                          output_size: int | tuple[int, int], spatial_scales: Sequence[float],
                          sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """Each RoI pooled from its level: what ``torchvision.ops.roi_align`` gives per level, in one product.

    Args:
        feats: Per level, an (N, C, H_l, W_l) map (all with the same N and C).
        rois: (K, 5) boxes as (batch index, x1, y1, x2, y2) in image coordinates.
        levels: (K,) the level each RoI is pooled from.
        output_size: (h, w) or one int, the pooled size.
        spatial_scales: Per level, map size over image size (1 / stride).
        sampling_ratio: Samples per bin along each axis; ``<= 0``: ``ceil(roi size / output size)`` per RoI.
        aligned: Shift the boxes by half a pixel (``aligned=True`` of mmcv and torchvision).

    Returns:
        (K, C, h, w) pooled features, in the features' dtype (computed in at least float32).
    """
    pooled = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    dtype = torch.promote_types(feats[0].dtype, torch.float32)
    count, channels = rois.shape[0], feats[0].shape[1]
    rois = rois.detach().to(dtype)
    rows, cols, values = [], [], []
    pixel_offset = 0
    for level, feat in enumerate(feats):
        inds = torch.nonzero(levels == level).squeeze(1)
        if inds.numel() > 0:
            level_rois = rois[inds]
            grids = sampling_grids(level_rois, spatial_scales[level], pooled, sampling_ratio, aligned)
            groups = [tuple(grids[0].tolist())] if sampling_ratio > 0 else torch.unique(grids, dim=0).tolist()
            for grid in groups:
                if grid[0] <= 0 or grid[1] <= 0:  # no samples: zeros, as in the kernel
                    continue
                member = slice(None) if sampling_ratio > 0 else (grids == grids.new_tensor(grid)).all(dim=1)
                entries = _level_entries(level_rois[member], inds[member], feat.shape, pixel_offset,
                                         spatial_scales[level], pooled, tuple(grid), aligned)
                for store, part in zip((rows, cols, values), entries):
                    store.append(part)
        pixel_offset += feat.shape[0] * feat.shape[2] * feat.shape[3]
    out_rows = count * pooled[0] * pooled[1]
    if not rows:
        return feats[0].new_zeros(count, channels, *pooled)
    rows, cols, values = torch.cat(rows), torch.cat(cols), torch.cat(values)
    matrix = _csr(rows, cols, values, (out_rows, pixel_offset))
    transposed = _csr(cols, rows, values, (pixel_offset, out_rows))
    table = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, channels) for f in feats]).to(dtype)
    out = _SparsePooling.apply(table, matrix, transposed)
    return out.reshape(count, pooled[0], pooled[1], channels).permute(0, 3, 1, 2).to(feats[0].dtype)
