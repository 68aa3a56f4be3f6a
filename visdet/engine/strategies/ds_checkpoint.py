"""DeepSpeed checkpoint files written atomically and read with ``torch.load(weights_only=True)``.

DeepSpeed 0.19's ``TorchCheckpointEngine`` writes each file of a checkpoint
folder with a plain ``torch.save`` (a kill mid-write leaves a truncated file)
and reads every file with ``torch.load(..., weights_only=False)``, which runs
whatever the file's pickle asks for. :class:`SafeCheckpointEngine` is the same
engine with visdet's atomic write (:func:`visdet.engine.checkpoint.atomic.atomic_write_bytes`)
and visdet's loader (:func:`visdet.engine.checkpoint.loading.load_checkpoint_file`:
``weights_only=True``, errors that name the file). The strategy installs it on
the engine right after ``deepspeed.initialize``.
"""
from __future__ import annotations

import io
from typing import Any

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from visdet.engine.checkpoint.atomic import atomic_write_bytes
from visdet.engine.checkpoint.loading import load_checkpoint_file

#: What DeepSpeed 0.19's ZeRO 1/2 checkpoints hold beyond tensors and plain containers
#: (found with torch.serialization.get_unsafe_globals_in_checkpoint on their files): the
#: ZeRO optimizer's loss scaler (a LossScaler even in fp32, where it is a constant 1.0; a
#: DynamicLossScaler with fp16), its stage as an int enum, and the numel/start records of
#: its flat partitions. All are plain data rebuilt by the weights_only unpickler without
#: calling anything; nothing else is allowed. (The strategy stores its DeepSpeed config as
#: plain dicts, so mmengine's ConfigDict is not needed.)
DEEPSPEED_SAFE_GLOBALS: list[Any] = [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


class SafeCheckpointEngine(TorchCheckpointEngine):
    """DeepSpeed's torch checkpoint engine with atomic saves and weights_only loads."""

    def save(self, state_dict: Any, path: str) -> None:
        buffer = io.BytesIO()
        torch.save(state_dict, buffer, _use_new_zipfile_serialization=True)
        atomic_write_bytes(buffer.getbuffer(), path)

    def load(self, path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(DEEPSPEED_SAFE_GLOBALS):
            return load_checkpoint_file(path, map_location)


def install(engine: Any) -> None:
    """Swap a DeepSpeed engine's plain torch checkpoint engine for :class:`SafeCheckpointEngine`.

    Other engines (Nebula, the decoupled/fast writers) are left alone: they are
    opt-in DeepSpeed features with their own file handling.
    """
    current = getattr(engine, "checkpoint_engine", None)
    if type(current) is TorchCheckpointEngine:
        safe = SafeCheckpointEngine.__new__(SafeCheckpointEngine)
        safe.__dict__.update(current.__dict__)
        engine.checkpoint_engine = safe
