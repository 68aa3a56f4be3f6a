"""The twice-differentiable RoIAlign: torchvision's numbers and first backward, plus a double backward.

Boxes include the edges of the kernel's rules: partly and wholly outside the
map, degenerate (zero size), inverted, touching the last row/column, and large
enough that the adaptive grid (``sampling_ratio=0``) differs between RoIs.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from visdet.models import SingleRoIExtractor
from visdet.models.roi_heads import bbox2roi
from visdet.models.roi_heads.twice_differentiable_roi_align import roi_align

EDGE_BOXES = [
    [0, -10.0, -10.0, 3.0, 3.0],  # mostly outside, top left
    [1, 40.0, 30.0, 80.0, 90.0],  # past the bottom right edge
    [0, 5.0, 5.0, 5.0, 5.0],  # zero size
    [1, 10.0, 10.0, 4.0, 4.0],  # inverted
    [0, 0.0, 0.0, 44.0, 52.0],  # the whole map: touches the last row and column
    [1, 200.0, 200.0, 260.0, 260.0],  # wholly outside
]


def _case(dtype: torch.dtype = torch.float64, count: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 3, 13, 11, generator=g, dtype=dtype)  # 4x: a 52x44 image
    corners = torch.rand(count, 4, generator=g, dtype=dtype) * torch.tensor([44.0, 52.0, 44.0, 52.0], dtype=dtype)
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]), torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    index = torch.randint(0, 2, (count, 1), generator=g).to(dtype)
    rois = torch.cat([torch.cat([index, boxes], 1), torch.tensor(EDGE_BOXES, dtype=dtype)])
    return feature, rois


@pytest.mark.parametrize("sampling_ratio", [0, 2, -1])
@pytest.mark.parametrize("aligned", [True, False])
def test_forward_and_first_backward_match_torchvision(sampling_ratio, aligned):
    feature, rois = _case()
    feature.requires_grad_(True)
    args = ((7, 5), 0.25, sampling_ratio, aligned)
    expected, got = torchvision_roi_align(feature, rois, *args), roi_align(feature, rois, *args)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    upstream = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, feature, upstream)
    (have,) = torch.autograd.grad(got, feature, upstream)
    torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12)


def test_float32_matches_too():
    feature, rois = _case(torch.float32)
    torch.testing.assert_close(roi_align(feature, rois, 7, 0.25, 0, True),
                               torchvision_roi_align(feature, rois, 7, 0.25, 0, True), rtol=1e-5, atol=1e-5)


def test_boxes_get_no_gradient_as_in_torchvision():
    feature, rois = _case()
    rois.requires_grad_(True)
    out = roi_align(feature.requires_grad_(True), rois, 7, 0.25, 0, True)
    assert out.requires_grad and not torch.autograd.grad(out.sum(), rois, allow_unused=True)[0]


def test_double_backward_works_where_torchvision_refuses():
    feature, rois = _case(count=3)
    feature = feature[:, :1, :6, :6].clone().requires_grad_(True)  # a tiny case: gradgradcheck is O(n^2)
    rois = rois[:4]
    torch.autograd.gradgradcheck(lambda f: roi_align(f, rois, 2, 0.25, 0, True), (feature,))
    # What a Hessian-vector product does: differentiate a gradient that depends on the features.
    out = torchvision_roi_align(feature, rois, 2, 0.25, 0, True)
    (grad,) = torch.autograd.grad((out**2).sum(), feature, create_graph=True)
    with pytest.raises(RuntimeError, match="double backwards on roi_align not supported"):
        torch.autograd.grad(grad.sum(), feature)
    (grad,) = torch.autograd.grad((roi_align(feature, rois, 2, 0.25, 0, True) ** 2).sum(), feature,
                                  create_graph=True)
    (hvp,) = torch.autograd.grad(grad, feature, torch.ones_like(grad))
    assert torch.isfinite(hvp).all() and hvp.abs().sum() > 0


def test_the_extractor_switches_to_it_with_double_backward_and_gives_the_same_features():
    ext = SingleRoIExtractor(roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0), out_channels=4,
                             featmap_strides=[4, 8, 16, 32])
    g = torch.Generator().manual_seed(1)
    feats = [torch.rand(1, 4, 256 // s, 256 // s, generator=g, dtype=torch.float64, requires_grad=True)
             for s in (4, 8, 16, 32)]
    rois = bbox2roi([torch.tensor([[3.0, 5.0, 3 + s, 5 + s] for s in (40.0, 160.0, 300.0, 700.0)],
                                  dtype=torch.float64)])
    assert ext.map_roi_levels(rois, 4).tolist() == [0, 1, 2, 3]  # every level, each through its own pooling
    plain = ext(feats, rois)
    ext.double_backward = True
    twice = ext(feats, rois)
    torch.testing.assert_close(twice, plain, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad((twice**2).sum(), feats, create_graph=True)
    hvps = torch.autograd.grad(grads, feats, [torch.ones_like(g) for g in grads])
    assert all(torch.isfinite(h).all() for h in hvps) and all(h.abs().sum() > 0 for h in hvps)
