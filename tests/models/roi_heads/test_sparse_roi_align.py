"""The sparse-matrix RoIAlign the extractor uses on the CPU: torchvision's forward and gradient, all levels at once.

Boxes include the kernel's edge rules (partly/wholly outside the map, zero
size, inverted, touching the last row and column) and sizes for which the
adaptive grid (``sampling_ratio=0``) differs between RoIs.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from visdet.models import SingleRoIExtractor
from visdet.models.roi_heads import bbox2roi
from visdet.models.roi_heads.sparse_roi_align import multi_level_roi_align

EDGE_BOXES = [
    [0, -10.0, -10.0, 3.0, 3.0],
    [1, 40.0, 30.0, 80.0, 90.0],
    [0, 5.0, 5.0, 5.0, 5.0],
    [1, 10.0, 10.0, 4.0, 4.0],
    [0, 0.0, 0.0, 44.0, 52.0],
    [1, 200.0, 200.0, 260.0, 260.0],
]
STRIDES = (4, 8)


def _case(dtype: torch.dtype, count: int = 40) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Two levels of a 52x44 image pair, RoIs with random levels plus the edge boxes on each level."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 3, 52 // s, 44 // s, generator=g, dtype=dtype, requires_grad=True) for s in STRIDES]
    corners = torch.rand(count, 4, generator=g, dtype=dtype) * torch.tensor([44.0, 52.0, 44.0, 52.0], dtype=dtype)
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]), torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    index = torch.randint(0, 2, (count, 1), generator=g).to(dtype)
    edges = torch.tensor(EDGE_BOXES, dtype=dtype)
    rois = torch.cat([torch.cat([index, boxes], 1), edges, edges])
    levels = torch.cat([torch.randint(0, 2, (count,), generator=g), torch.zeros(len(edges), dtype=torch.long),
                        torch.ones(len(edges), dtype=torch.long)])
    return feats, rois, levels


def _torchvision(feats, rois, levels, *args) -> torch.Tensor:
    out = [None] * len(rois)
    for level, feat in enumerate(feats):
        inds = torch.nonzero(levels == level).squeeze(1)
        pooled = torchvision_roi_align(feat, rois[inds], args[0], 1.0 / STRIDES[level], *args[1:])
        for i, row in zip(inds.tolist(), pooled):
            out[i] = row
    return torch.stack(out)


@pytest.mark.parametrize("sampling_ratio", [0, 2, -1, 3])
@pytest.mark.parametrize("aligned", [True, False])
def test_forward_and_gradient_match_torchvision_in_float64(sampling_ratio, aligned):
    feats, rois, levels = _case(torch.float64)
    args = ((7, 5), sampling_ratio, aligned)
    expected = _torchvision(feats, rois, levels, *args)
    got = multi_level_roi_align(feats, rois, levels, args[0], [1 / s for s in STRIDES], sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, feats, upstream)
    have = torch.autograd.grad(got, feats, upstream)
    for h, w in zip(have, want):
        assert h.abs().sum() > 0
        torch.testing.assert_close(h, w, rtol=1e-12, atol=1e-12)


def test_float32_matches_to_rounding_and_is_deterministic():
    feats, rois, levels = _case(torch.float32)
    args = ((7, 7), 2, True)
    expected = _torchvision(feats, rois, levels, *args)
    scales = [1 / s for s in STRIDES]
    got = multi_level_roi_align(feats, rois, levels, (7, 7), scales, 2, True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, feats, upstream)
    first = torch.autograd.grad(got, feats, upstream)
    again = torch.autograd.grad(multi_level_roi_align(feats, rois, levels, (7, 7), scales, 2, True), feats, upstream)
    for h, w, a in zip(first, want, again):
        torch.testing.assert_close(h, w, rtol=1e-5, atol=1e-5)
        assert torch.equal(h, a)  # the same sums in the same order on every run


def test_boxes_get_no_gradient_and_no_rois_give_an_empty_result():
    feats, rois, levels = _case(torch.float64)
    rois.requires_grad_(True)
    out = multi_level_roi_align(feats, rois, levels, 7, [1 / s for s in STRIDES], 0, True)
    assert out.requires_grad and torch.autograd.grad(out.sum(), rois, allow_unused=True)[0] is None
    empty = multi_level_roi_align(feats, rois[:0], levels[:0], 7, [1 / s for s in STRIDES], 0, True)
    assert empty.shape == (0, 3, 7, 7)


def test_bfloat16_features_and_autocast_pool_in_float32_and_return_the_features_dtype():
    feats, rois, levels = _case(torch.float32)
    low = [f.detach().bfloat16().requires_grad_(True) for f in feats]
    expected = _torchvision([f.float() for f in low], rois, levels, (7, 7), 2, True)
    got = multi_level_roi_align(low, rois, levels, 7, [1 / s for s in STRIDES], 2, True)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=1e-2, atol=1e-2)
    got.float().sum().backward()
    assert all(f.grad is not None and f.grad.dtype == torch.bfloat16 for f in low)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = multi_level_roi_align(feats, rois, levels, 7, [1 / s for s in STRIDES], 2, True)
    assert under.dtype == torch.float32  # float32 maps stay float32 under bf16 autocast, as with torchvision's op
    torch.testing.assert_close(under, _torchvision(feats, rois, levels, (7, 7), 2, True), rtol=1e-5, atol=1e-6)


def test_the_extractor_pools_with_it_on_the_cpu_and_equals_torchvision_per_level():
    ext = SingleRoIExtractor(roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2), out_channels=4,
                             featmap_strides=[4, 8, 16, 32])
    g = torch.Generator().manual_seed(1)
    feats = [torch.rand(2, 4, 256 // s, 256 // s, generator=g, dtype=torch.float64, requires_grad=True)
             for s in (4, 8, 16, 32)]
    rois = bbox2roi([torch.tensor([[3.0, 5.0, 3 + s, 5 + s] for s in (40.0, 160.0, 300.0, 700.0)],
                                  dtype=torch.float64)] * 2)
    levels = ext.map_roi_levels(rois, 4)
    assert levels.tolist() == [0, 1, 2, 3] * 2
    got = ext(feats, rois)
    for i, level in enumerate(levels.tolist()):
        expected = torchvision_roi_align(feats[level], rois[i:i + 1], 7, 1 / (4 * 2**level), 2, True)
        torch.testing.assert_close(got[i:i + 1], expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(got)
    have = torch.autograd.grad(got, feats, upstream)
    ext_tv = [torchvision_roi_align(feats[lv], rois[i:i + 1], 7, 1 / (4 * 2**lv), 2, True)
              for i, lv in enumerate(levels.tolist())]
    want = torch.autograd.grad(torch.cat(ext_tv), feats, upstream)
    for h, w in zip(have, want):
        torch.testing.assert_close(h, w, rtol=1e-12, atol=1e-12)
