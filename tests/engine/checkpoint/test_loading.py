"""Checkpoints are loaded with weights_only=True; bad files are named, never run."""
from __future__ import annotations

import pytest
import torch

from visdet.engine.checkpoint.loading import load_checkpoint_file
from visdet.errors import CheckpointError


def test_malicious_checkpoint_is_refused_and_its_payload_does_not_run(tmp_path, payload):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path, allow_unsafe=False)
    message = str(info.value)
    assert str(path) in message and "system" in message and "--allow-unsafe-checkpoint" in message
    assert not marker.exists()


def test_unsafe_objects_load_only_with_the_explicit_opt_in(tmp_path):
    from fractions import Fraction  # harmless, but not a tensor or plain container

    path = tmp_path / "fraction.pth"
    torch.save({"ratio": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="fractions.Fraction"):
        load_checkpoint_file(path, allow_unsafe=False)
    assert load_checkpoint_file(path, allow_unsafe=True)["ratio"] == Fraction(1, 3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "epoch_3.pth"
    torch.save({"state_dict": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint_file(path)
    assert str(path) in str(info.value)
