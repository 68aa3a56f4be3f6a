"""DetDataPreprocessor: batching, normalisation and the shapes written into metainfo."""
from __future__ import annotations

import torch

from visdet.models import DetDataPreprocessor
from visdet.structures import DetDataSample


def test_pad_shape_and_batch_input_shape_are_recorded():
    pre = DetDataPreprocessor(mean=[10.0, 20.0, 30.0], std=[2.0, 2.0, 2.0], bgr_to_rgb=True, pad_size_divisor=32)
    imgs = [torch.zeros(3, 50, 70, dtype=torch.uint8), torch.zeros(3, 30, 40, dtype=torch.uint8)]
    imgs[0][0] = 30  # B channel of a BGR image
    samples = [DetDataSample(metainfo=dict(img_shape=(50, 70))), DetDataSample(metainfo=dict(img_shape=(30, 40)))]
    out = pre(dict(inputs=imgs, data_samples=samples), training=True)
    assert out["inputs"].shape == (2, 3, 64, 96)
    assert [s.batch_input_shape for s in out["data_samples"]] == [(64, 96), (64, 96)]
    assert [s.pad_shape for s in out["data_samples"]] == [(64, 96), (32, 64)]
    # BGR -> RGB: the B plane becomes channel 2, normalised with the third mean/std
    assert torch.allclose(out["inputs"][0, 2, :50, :70], torch.tensor(0.0))
    assert torch.allclose(out["inputs"][0, 0, :50, :70], torch.tensor(-5.0))
