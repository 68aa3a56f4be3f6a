"""config/layer_decay.py: the layer-decay keys' checks and the translation of MMDetection's spelling."""
from __future__ import annotations

import pytest

from visdet.engine.optim.config.layer_decay import LayerDecay, from_mmdet_keys, parse_layer_decay
from visdet.engine.optim.errors import OptimizerConfigError


def test_parse_reads_rate_type_and_layers_and_the_scale_follows_the_depth():
    decay = parse_layer_decay(dict(layer_decay=0.75, layer_decay_type="stage_wise", layer_decay_num_layers=4))
    assert decay == LayerDecay(0.75, "stage_wise", 4)
    assert [decay.scale(i, 6) for i in range(6)] == pytest.approx([0.75 ** 5, 0.75 ** 4, 0.75 ** 3, 0.75 ** 2,
                                                                   0.75, 1.0])
    assert parse_layer_decay(dict(norm_decay_mult=0.0)) is None
    assert parse_layer_decay(dict(layer_decay=1)).rate == 1.0  # 1 decays nothing, and is allowed


@pytest.mark.parametrize("value", ["0.7", -0.1, float("nan"), True])
def test_a_rate_that_is_not_a_number_in_range_is_refused(value):
    with pytest.raises(OptimizerConfigError, match="layer_decay"):
        parse_layer_decay(dict(layer_decay=value))


def test_mmdet_keys_become_visdets():
    assert from_mmdet_keys(dict(decay_rate=0.7, decay_type="layer_wise", num_layers=6, norm_decay_mult=0.0)) == dict(
        layer_decay=0.7, layer_decay_type="layer_wise", layer_decay_num_layers=6, norm_decay_mult=0.0)
