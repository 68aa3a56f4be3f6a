"""DeltaXYWHBBoxCoder: round trip, normalisation, ratio clip, border clip."""
from __future__ import annotations

import math

import torch

from visdet.models import DeltaXYWHBBoxCoder


def test_encode_decode_round_trip_with_means_and_stds():
    coder = DeltaXYWHBBoxCoder(target_means=[0.1, -0.1, 0.0, 0.05], target_stds=[0.1, 0.1, 0.2, 0.2])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    priors = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 50], 1)
    xy2 = torch.rand(50, 2, generator=g) * 100
    gts = torch.cat([xy2, xy2 + 5 + torch.rand(50, 2, generator=g) * 50], 1)
    deltas = coder.encode(priors, gts)
    assert torch.allclose(coder.decode(priors, deltas), gts, atol=1e-3)


def test_known_deltas():
    coder = DeltaXYWHBBoxCoder()
    priors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gts = torch.tensor([[5.0, 0.0, 15.0, 40.0]])  # centre +5 in x, height doubled
    expected = torch.tensor([[0.5, 0.5, 0.0, math.log(2.0)]])
    assert torch.allclose(coder.encode(priors, gts), expected, atol=1e-6)


def test_ratio_clip_and_border_clip_and_per_class_deltas():
    coder = DeltaXYWHBBoxCoder()
    priors = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    huge = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    w = coder.decode(priors, huge)[0, 2] - coder.decode(priors, huge)[0, 0]
    assert torch.isclose(w, torch.tensor(10.0 * 1000 / 16), rtol=1e-4)
    clipped = coder.decode(priors, huge, max_shape=(30, 40))[0]
    assert clipped.tolist() == [0.0, 0.0, 40.0, 30.0]
    per_class = coder.decode(priors, torch.zeros(1, 12))
    assert per_class.shape == (1, 12) and torch.allclose(per_class.view(3, 4), priors.expand(3, 4))
