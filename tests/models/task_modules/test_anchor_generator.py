"""AnchorGenerator: count, layout, mmdet's centring, caching."""
from __future__ import annotations

import torch

from visdet.models import AnchorGenerator


def test_count_shape_and_base_anchors_centred_at_zero():
    gen = AnchorGenerator(strides=[4, 8], ratios=[0.5, 1.0, 2.0], scales=[8])
    assert gen.num_base_anchors == [3, 3]
    base = gen.base_anchors[0]
    centres = (base[:, :2] + base[:, 2:]) / 2
    assert torch.allclose(centres, torch.zeros(3, 2))
    # ratio 1, scale 8 at stride 4: a 32x32 box around (0, 0)
    assert torch.allclose(base[1], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    # ratio h/w = 2: taller than wide, same area
    w, h = base[2, 2] - base[2, 0], base[2, 3] - base[2, 1]
    assert torch.isclose(h / w, torch.tensor(2.0)) and torch.isclose(w * h, torch.tensor(1024.0))
    levels = gen.grid_priors([(5, 7), (3, 4)])
    assert [tuple(a.shape) for a in levels] == [(5 * 7 * 3, 4), (3 * 4 * 3, 4)]


def test_location_major_layout_and_stride_shifts():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[2])
    (anchors,) = gen.grid_priors([(2, 3)])
    grid = anchors.view(2, 3, 3, 4)  # (H, W, A, 4)
    assert torch.allclose(grid[0, 1] - grid[0, 0], torch.tensor([16.0, 0, 16.0, 0]).expand(3, 4))
    assert torch.allclose(grid[1, 0] - grid[0, 0], torch.tensor([0, 16.0, 0, 16.0]).expand(3, 4))
    assert torch.allclose(grid[0, 0], gen.base_anchors[0])


def test_grid_priors_are_cached_by_feature_size():
    gen = AnchorGenerator(strides=[4], ratios=[1.0], scales=[8])
    first = gen.grid_priors([(4, 4)])
    assert gen.grid_priors([(4, 4)])[0] is first[0]
    assert gen.grid_priors([(4, 5)])[0].shape[0] == 20
