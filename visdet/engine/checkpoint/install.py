"""Puts visdet's atomic writes and safe loading under mmengine, through its own extension points.

:func:`install` replaces mmengine's ``local`` storage backend
(``mmengine.fileio.register_backend``) with
:class:`~visdet.engine.checkpoint.atomic.AtomicLocalBackend`, and its local
checkpoint loader (``CheckpointLoader.register_scheme``) with one that reads a
file with :func:`~visdet.engine.checkpoint.loading.load_checkpoint_file` and a
DeepSpeed checkpoint folder with
:func:`~visdet.engine.checkpoint.deepspeed_folder.load_deepspeed_weights`.
``tools/train.py``/``tools/test.py`` call it, and
:class:`visdet.engine.hooks.PlainCheckpointHook` calls it when a Runner starts.
"""
from __future__ import annotations

import os
from typing import Any

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio import io as mmengine_io
from mmengine.runner.checkpoint import CheckpointLoader

from visdet.engine.checkpoint.atomic import AtomicLocalBackend
from visdet.engine.checkpoint.deepspeed_folder import load_deepspeed_weights
from visdet.engine.checkpoint.loading import load_checkpoint_file, set_allow_unsafe


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local loader: a checkpoint file, or the weights of a DeepSpeed checkpoint folder."""
    if os.path.isdir(os.path.expanduser(filename)):
        return load_deepspeed_weights(filename, map_location)
    return load_checkpoint_file(filename, map_location)


def install(allow_unsafe: bool = False) -> None:
    """Make mmengine write local files atomically and load local checkpoints safely (idempotent)."""
    set_allow_unsafe(allow_unsafe)
    register_backend("local", AtomicLocalBackend, force=True, prefixes="")
    # Backends made before this call are cached; drop the plain local ones.
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]
    CheckpointLoader.register_scheme(prefixes="", loader=_load_from_local, force=True)


def is_installed() -> bool:
    """Whether :func:`install` is in effect for local files."""
    from mmengine.fileio.backends import prefix_to_backends

    return prefix_to_backends.get("") is AtomicLocalBackend and CheckpointLoader._schemes.get("") is _load_from_local
