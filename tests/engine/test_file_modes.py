"""Checkpoints and the generated data set get the modes the umask asks for, as open()/mkdir would give them.

tempfile.mkstemp makes 0o600 files and mkdtemp 0o700 folders whatever the umask;
the atomic checkpoint write and the data set generator go through them.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest
import torch
from mmengine.runner.checkpoint import save_checkpoint

from visdet.datasets.embedded import EmbeddedDataSpec, generate
from visdet.engine.checkpoint.atomic import current_umask
from visdet.engine.checkpoint.install import install


@pytest.fixture(params=[0o022, 0o027])
def umask(request) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoints_follow_the_umask(tmp_path, umask):
    install()
    save_checkpoint({"state_dict": {"w": torch.ones(2)}}, str(tmp_path / "epoch_1.pth"))  # the Runner's call
    assert _mode(tmp_path / "epoch_1.pth") == 0o666 & ~umask
    assert current_umask() == umask


def test_generated_data_set_folder_follows_the_umask(tmp_path, umask):
    root = generate(tmp_path / "data", EmbeddedDataSpec(num_train=1, num_val=1, image_size=(32, 32),
                                                        min_object_size=8, max_object_size=16, max_objects=1))
    assert _mode(root) == 0o777 & ~umask
    assert _mode(root / "train") == 0o777 & ~umask  # made by mkdir inside it
