"""Validation in batches (the embedded data set's val_dataloader.batch_size=8) detects what one by one does.

The embedded images all have one size, so a batch adds no padding; this holds
the config's promise on the shipped small config's model and val split.
"""
from __future__ import annotations

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from testutils import REPO

from visdet.datasets.embedded import EmbeddedDataSpec, ensure
from visdet.registry import DATASETS, MODELS


def test_batched_validation_gives_the_detections_of_one_image_at_a_time(tmp_path):
    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
    root = str(tmp_path / "data") + "/"
    cfg.embedded_data.root = root
    ensure(root, EmbeddedDataSpec.from_cfg(dict(cfg.embedded_data)))
    cfg.val_dataloader.dataset.data_root = root
    assert Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py")).val_dataloader.batch_size == 8
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    samples = [dataset[i] for i in range(len(dataset))]
    assert len({tuple(s["inputs"].shape) for s in samples}) == 1  # one size: no padding in a batch
    with torch.no_grad():
        alone = [out for s in samples for out in model.test_step(pseudo_collate([s]))]
        batched = model.test_step(pseudo_collate(samples))
    assert sum(len(o.pred_instances) for o in alone) > 0
    for one, many in zip(alone, batched, strict=True):
        assert one.metainfo["img_id"] == many.metainfo["img_id"]
        assert len(one.pred_instances) == len(many.pred_instances)
        torch.testing.assert_close(many.pred_instances.bboxes, one.pred_instances.bboxes, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(many.pred_instances.scores, one.pred_instances.scores, rtol=1e-5, atol=1e-6)
        assert torch.equal(many.pred_instances.labels, one.pred_instances.labels)
