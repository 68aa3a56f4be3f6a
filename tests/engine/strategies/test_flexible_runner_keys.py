"""visdet's FlexibleRunner (DeepSpeed, FSDP) names the dataloader section of a dataset's config error, like Runner."""
from __future__ import annotations

import pytest
from mmengine.config import Config

from testutils import REPO, data_options


def test_flexible_runner_prefixes_the_dataloader_section_to_dataset_keys(tmp_path):
    from visdet.datasets.errors import DatasetConfigError
    from visdet.engine.launch import prepare_embedded_data
    from visdet.engine.strategies.runner import FlexibleRunner

    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
    cfg.merge_from_dict(dict(option.split("=", 1) for option in data_options(str(tmp_path / "data"))))
    cfg.merge_from_dict({"train_dataloader.dataset.filter_cfg.min_size": 1000})
    cfg.work_dir = str(tmp_path / "work")
    cfg.strategy = dict(type="SingleDeviceStrategy")
    prepare_embedded_data(cfg)
    runner = FlexibleRunner.from_cfg(cfg)
    with pytest.raises(DatasetConfigError) as err:
        runner.build_train_loop(runner._train_loop)
    assert err.value.key == "train_dataloader.dataset.filter_cfg.min_size"
