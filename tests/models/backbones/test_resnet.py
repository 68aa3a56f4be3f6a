"""ResNet backbone: output shapes, freezing, norm_eval, norm_cfg and depth errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from visdet.models import ModelConfigError, ResNet
from visdet.models.builder_utils import build_component
from visdet.registry import MODELS


def test_outputs_follow_out_indices_and_strides():
    net = ResNet(depth=18, out_indices=(0, 1, 2, 3))
    outs = net(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]
    net50 = ResNet(depth=50, out_indices=(3,), frozen_stages=-1)
    (last,) = net50(torch.rand(1, 3, 64, 64))
    assert last.shape == (1, 2048, 2, 2)


def test_pytorch_style_puts_the_stride_on_the_3x3_conv():
    net = ResNet(depth=50)
    block = net.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


def test_frozen_stages_and_norm_eval_survive_train():
    net = ResNet(depth=18, frozen_stages=1, norm_eval=True)
    net.train()
    for module in (net.conv1, net.bn1, net.layer1):
        assert all(not p.requires_grad for p in module.parameters())
    assert not net.bn1.training and not net.layer1.training
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert net.layer2[0].conv1.training  # convs of unfrozen stages do train

    live = ResNet(depth=18, frozen_stages=-1, norm_eval=False).train()
    assert all(p.requires_grad for p in live.parameters())
    assert all(m.training for m in live.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_stage_statistics_do_not_move():
    net = ResNet(depth=18, frozen_stages=0, norm_eval=False).train()
    before = net.bn1.running_mean.clone()
    l2_before = net.layer2[0].bn1.running_mean.clone()
    net(torch.rand(2, 3, 64, 64) * 5)
    assert torch.equal(net.bn1.running_mean, before)
    assert not torch.equal(net.layer2[0].bn1.running_mean, l2_before)


def test_norm_cfg_builds_group_norm_and_frozen_affine():
    net = ResNet(depth=18, norm_cfg=dict(type="GN", num_groups=8), frozen_stages=-1)
    assert isinstance(net.layer3[0].bn1, nn.GroupNorm)
    assert net(torch.rand(1, 3, 32, 32))[-1].shape == (1, 512, 1, 1)
    fixed = ResNet(depth=18, norm_cfg=dict(type="BN", requires_grad=False), frozen_stages=-1)
    assert not fixed.layer4[1].bn2.weight.requires_grad


def test_unsupported_depth_names_the_key_and_valid_values():
    with pytest.raises(ModelConfigError, match=r"model\.backbone\.depth.*18, 34, 50, 101"):
        ResNet(depth=42)
    with pytest.raises(ModelConfigError, match=r"model\.backbone\.depth"):
        build_component(dict(type="ResNet", depth=200), MODELS, "model.backbone")


def test_bad_norm_cfg_and_style_are_config_errors():
    with pytest.raises(ModelConfigError, match=r"model\.backbone\.norm_cfg"):
        ResNet(depth=18, norm_cfg=dict(type="NoSuchNorm"))
    with pytest.raises(ModelConfigError, match=r"model\.backbone\.style"):
        ResNet(depth=18, style="caffe")
