"""A DeepSpeed checkpoint folder read as an ordinary checkpoint: the model's weights, for evaluation.

DeepSpeed writes a checkpoint as a folder (``work_dir/epoch_N.pth/``), which
mmengine's loaders and ``tools/test.py`` cannot open. Under ZeRO stages 0-2
every process holds the whole model, so the folder's
``mp_rank_00_model_states.pt`` has the full ``module`` state dict next to
visdet's client state (``meta``...): that is all evaluation needs, and reading
it needs neither DeepSpeed nor a process group. Under ZeRO-3 the weights are
split over the ``zero_pp_rank_*`` files; DeepSpeed's ``zero_to_fp32.py``
(which the strategy copies into the work dir) merges them, and the error says so.

The file is read with visdet's ``weights_only=True`` loader
(:mod:`visdet.engine.checkpoint.loading`); a ZeRO 0-2 model-states file holds
only tensors and plain containers.
"""
from __future__ import annotations

import glob
import os
from typing import Any

from visdet.engine.checkpoint.loading import load_checkpoint_file
from visdet.errors import CheckpointError

#: The file of a DeepSpeed checkpoint folder that holds the module weights (model-parallel rank 0).
MODEL_STATES = "mp_rank_00_model_states.pt"


#: ZeRO-3 writes one model-states file per process instead, with empty stubs for the partitioned weights.
ZERO3_MODEL_STATES = "zero_pp_rank_*_mp_rank_00_model_states.pt"


def is_deepspeed_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder DeepSpeed's engine wrote a checkpoint into (any ZeRO stage)."""
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, MODEL_STATES))
                                    or bool(glob.glob(os.path.join(glob.escape(os.fspath(path)), ZERO3_MODEL_STATES))))


def load_deepspeed_weights(folder: str | os.PathLike, map_location: Any = None) -> dict[str, Any]:
    """``{'state_dict': weights, 'meta': ...}`` from a DeepSpeed checkpoint folder (ZeRO 0-2).

    Raises:
        CheckpointError: ``folder`` holds no model-states file, or a ZeRO-3
            checkpoint whose weights are partitioned (with the merge command).
    """
    folder = os.path.abspath(os.path.expanduser(os.fspath(folder)))
    if not is_deepspeed_folder(folder):
        raise CheckpointError(f"checkpoint {folder} is a folder without {MODEL_STATES}: not a DeepSpeed "
                              "checkpoint; pass a .pth file or the epoch_N.pth/ folder DeepSpeed wrote")
    if is_zero3_folder(folder):
        raise CheckpointError(zero3_message(folder))
    states = load_checkpoint_file(os.path.join(folder, MODEL_STATES), map_location)
    module = states.get("module") if isinstance(states, dict) else None
    if not isinstance(module, dict):
        raise CheckpointError(f"checkpoint {folder}/{MODEL_STATES} has no 'module' weights; is it a DeepSpeed "
                              "model-states file?")
    checkpoint: dict[str, Any] = {"state_dict": module}
    if "meta" in states:
        checkpoint["meta"] = states["meta"]
    return checkpoint


def is_zero3_folder(path: str | os.PathLike) -> bool:
    """A DeepSpeed folder in ZeRO-3's layout: per-process model states, no whole-model file."""
    return is_deepspeed_folder(path) and not os.path.isfile(os.path.join(path, MODEL_STATES))


def zero3_message(folder: str | os.PathLike) -> str:
    """ZeRO-3 partitions the weights themselves: say how DeepSpeed's own script merges them."""
    folder = os.path.abspath(os.fspath(folder))
    work_dir, tag = os.path.split(folder)
    return (f"checkpoint {folder} is a ZeRO-3 checkpoint: its weights are split over its zero_pp_rank_* files. Merge "
            f"them into one file first with DeepSpeed's script (copied into the work dir): "
            f"python {work_dir}/zero_to_fp32.py {work_dir} {folder}_fp32 --tag {tag}, "
            f"then pass {folder}_fp32/pytorch_model.bin")
