"""Keeps every checkpoint loadable with ``torch.load(weights_only=True)``, with no allowlist.

Since torch 2.6 ``torch.load`` refuses arbitrary pickled objects by default,
and mmengine 0.10.x puts its ``HistoryBuffer`` objects (numpy arrays inside)
and numpy scalars into each checkpoint's ``message_hub``; loading such a file
needs ``weights_only=False`` -- running whatever the file contains -- or an
allowlist that would have to include ``builtins.getattr``. Instead this hook
rewrites those values into plain tensors, lists and numbers just before a
save, and turns them back into ``HistoryBuffer`` objects right after a load,
before the Runner hands them to its MessageHub. Model, optimizer and
scheduler states are tensors and built-in types already and are not touched.

When the Runner starts it also installs :mod:`visdet.engine.checkpoint.install`
(atomic checkpoint writes, ``weights_only=True`` loading with errors that name
the file), unless ``tools/train.py`` already did.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from visdet.registry import HOOKS

_BUFFER_TAG = "__visdet_history_buffer__"


def encode(value: Any) -> Any:
    """``value`` with HistoryBuffers as tagged dicts, numpy arrays as tensors and numpy scalars as numbers."""
    if isinstance(value, HistoryBuffer):
        logs, counts = value.data
        return {_BUFFER_TAG: True, "log_history": torch.from_numpy(np.asarray(logs, dtype=np.float64)),
                "count_history": torch.from_numpy(np.asarray(counts, dtype=np.float64)),
                "max_length": int(value.max_length)}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy()) if value.dtype != object else [encode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return type(value)((k, encode(v)) for k, v in value.items()) if isinstance(value, dict) else {
            k: encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(encode(v) for v in value)
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` for HistoryBuffers (other values stay plain: they load as they are)."""
    if isinstance(value, Mapping):
        if value.get(_BUFFER_TAG):
            return HistoryBuffer(value["log_history"].numpy(), value["count_history"].numpy(),
                                 int(value["max_length"]))
        return type(value)((k, decode(v)) for k, v in value.items()) if isinstance(value, dict) else {
            k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Encode ``message_hub`` and ``meta`` before each save; decode them after each load."""

    priority = "VERY_LOW"  # after every hook that adds to the checkpoint

    def before_run(self, runner) -> None:  # before the Runner loads or resumes anything
        from visdet.engine.checkpoint.install import install, is_installed

        if not is_installed():
            install()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ("message_hub", "meta"):
            if key in checkpoint:
                checkpoint[key] = encode(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "message_hub" in checkpoint:
            checkpoint["message_hub"] = decode(checkpoint["message_hub"])
