"""ResNet.get_layer_depth: mmpretrain's (layer_id, max_layer_id) for layer-wise and stage-wise lr decay."""
from __future__ import annotations

from visdet.models.backbones.resnet import ResNet


def test_layer_wise_depths_count_blocks_and_stage_wise_depths_count_stages():
    net = ResNet(depth=50)  # blocks (3, 4, 6, 3): 16, so ids 0..17 and max 18
    assert net.get_layer_depth("conv1.weight") == (0, 18)
    assert net.get_layer_depth("layer1.0.conv1.weight") == (1, 18)
    assert net.get_layer_depth("layer2.0.downsample.1.bias") == (4, 18)
    assert net.get_layer_depth("layer4.2.bn3.weight") == (16, 18)
    assert net.get_layer_depth("backbone.bn1.weight", prefix="backbone.") == (0, 18)
    assert net.get_layer_depth("neck.fpn_convs.0.weight", prefix="backbone.") == (17, 18)
    assert net.get_layer_depth("layer3.5.conv2.weight", decay_type="stage_wise") == (3, 6)
    assert net.get_layer_depth("rpn_head.rpn_cls.weight", prefix="backbone.", decay_type="stage_wise") == (5, 6)
    depths = {net.get_layer_depth(name)[0] for name, _ in net.named_parameters()}
    assert depths == set(range(17))
