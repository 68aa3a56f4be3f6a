"""Checkpoint files that cannot run code when loaded: ``torch.load(weights_only=True)`` with an allowlist.

mmengine's local checkpoint loader calls ``torch.load`` with the default of the
installed torch. :func:`load_checkpoint_file` always uses ``weights_only=True``
with an explicit allowlist (:data:`SAFE_GLOBALS`); a file that needs anything
else is refused with an error naming the file and the object it wanted, unless
the caller opts in (``--allow-unsafe-checkpoint``, set for the process through
:func:`visdet.engine.checkpoint.install.install`). A truncated or corrupt file
is reported as such, naming the file.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from typing import Any

import torch
from mmengine.logging import print_log

from visdet.errors import CheckpointError

#: Globals a visdet checkpoint may hold beyond what ``weights_only=True`` allows
#: by default (tensors, storages, dicts/OrderedDicts, lists, tuples, sets, str,
#: bytes, numbers, bool, None, torch dtypes/devices/sizes). Model, optimizer
#: (torch, bitsandbytes, D-Adaptation, the Muon hybrid) and scheduler states need
#: nothing more, and PlainCheckpointHook stores the log history as tensors, so
#: the list is empty: every extra entry would be code the file may call.
SAFE_GLOBALS: list[Any] = []

_allow_unsafe = False


def set_allow_unsafe(allowed: bool) -> None:
    """What :func:`load_checkpoint_file` does by default with a file that needs other Python objects."""
    global _allow_unsafe
    _allow_unsafe = allowed


def load_checkpoint_file(filename: str | os.PathLike, map_location: Any = None,
                         allow_unsafe: bool | None = None) -> Any:
    """``torch.load(filename, weights_only=True)`` with :data:`SAFE_GLOBALS`, and errors that name the file.

    Args:
        filename: A local checkpoint file.
        map_location: As for ``torch.load``.
        allow_unsafe: Load a file that needs other Python objects with
            ``weights_only=False`` (it can run code: only for files you trust).
            ``None`` uses what :func:`set_allow_unsafe` set.
    """
    path = os.path.expanduser(os.fspath(filename))
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {os.path.abspath(path)} does not exist")
    unsafe_ok = _allow_unsafe if allow_unsafe is None else allow_unsafe
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = _unsafe_globals(path, str(error))
        if not wanted:  # refused, but for no object it names: bytes that are no checkpoint at all
            raise _corrupt(path, error) from None
        if not unsafe_ok:
            raise CheckpointError(
                f"checkpoint {os.path.abspath(path)} holds Python objects that are not tensors or plain "
                f"containers ({wanted}); loading it could run code stored in the file, "
                "so visdet refuses. If you trust where it came from, pass --allow-unsafe-checkpoint to "
                "tools/train.py or tools/test.py") from None
        print_log(f"Loading {path} with weights_only=False (--allow-unsafe-checkpoint): it needs {wanted}",
                  logger="current", level=logging.WARNING)
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise _corrupt(path, error) from None


def _corrupt(path: str, error: BaseException) -> CheckpointError:
    detail = str(error).splitlines()[0] if str(error) else "no detail"
    return CheckpointError(
        f"checkpoint {os.path.abspath(path)} is truncated or corrupt and cannot be read "
        f"({type(error).__name__}: {detail}); resume from an earlier checkpoint in the same folder")


def _unsafe_globals(path: str, message: str) -> str:
    """The globals the file needs beyond the allowlist (torch lists them without unpickling anything)."""
    try:
        names = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) -
                       {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS})
    except Exception:  # an old-format (non-zip) file: fall back to the unpickler's message
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", message)))
    return ", ".join(names)
