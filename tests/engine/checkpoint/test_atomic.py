"""A checkpoint write that fails leaves the previous file whole and no temporary behind."""
from __future__ import annotations

import pytest

from visdet.engine.checkpoint import atomic


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "epoch_1.pth"
    atomic.atomic_write_bytes(b"old and complete", target)

    def crash(*args):
        raise KeyboardInterrupt  # as if the process were stopped between write and rename

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_bytes(b"new", target)
    assert target.read_bytes() == b"old and complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth"]  # no temporary left behind
