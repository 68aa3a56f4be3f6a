"""FPN: shapes, extra max-pool levels, top-down flow and init."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visdet.models import FPN, ModelConfigError


def _inputs():
    return [torch.rand(1, c, s, s) for c, s in zip([8, 16, 32, 64], [32, 16, 8, 4])]


def test_levels_and_extra_maxpool():
    fpn = FPN(in_channels=[8, 16, 32, 64], out_channels=12, num_outs=5)
    outs = fpn(_inputs())
    assert [tuple(o.shape) for o in outs] == [(1, 12, s, s) for s in (32, 16, 8, 4, 2)]
    assert torch.equal(outs[4], F.max_pool2d(outs[3], 1, stride=2))


def test_top_level_information_reaches_the_finest_output():
    fpn = FPN(in_channels=[8, 16, 32, 64], out_channels=12, num_outs=4)
    x = _inputs()
    base = fpn(x)[0]
    x[3] = x[3] + 1.0
    assert not torch.allclose(fpn(x)[0], base)


def test_convs_are_xavier_initialised_with_zero_bias():
    fpn = FPN(in_channels=[8, 16], out_channels=256, num_outs=2)
    conv = fpn.fpn_convs[0]
    bound = (6 / (256 * 9 + 256 * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.std() > bound / 4
    assert torch.count_nonzero(conv.bias) == 0


def test_too_few_outputs_is_a_config_error():
    with pytest.raises(ModelConfigError, match=r"model\.neck\.num_outs"):
        FPN(in_channels=[8, 16, 32], out_channels=8, num_outs=2)
