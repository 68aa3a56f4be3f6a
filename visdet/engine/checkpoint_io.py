"""Checkpoint files that cannot be left half-written and cannot run code when loaded.

Two gaps in mmengine 0.10.x, closed through its own extension points:

* **Atomic writes.** mmengine writes every local file (checkpoints, the
  ``last_checkpoint`` pointer) with ``open(path, 'wb').write(...)``: a kill
  during a save leaves a truncated file where the previous good one was, and
  ``--resume`` then fails on it. :class:`AtomicLocalBackend` replaces the
  ``local`` storage backend (``mmengine.fileio.register_backend``): it writes a
  temporary file in the same folder, fsyncs it and renames it over the target,
  so a reader sees the old file or the new one, never a mix. The file gets
  the mode ``open`` would give it (``0o666`` less the umask). A process killed
  mid-write leaves its ``.<name>.XXXXXXXX.tmp``; :func:`remove_stale_temporaries`
  removes them when the next run starts (visdet's ``CheckpointHook`` calls it).
  (mmengine's CheckpointHook writes the small ``last_checkpoint`` pointer with
  the builtin ``open``, not through the backend.)
* **Safe loading.** mmengine's local checkpoint loader calls ``torch.load``
  with the default of the installed torch. :func:`load_checkpoint_file` always
  uses ``weights_only=True`` with an explicit allowlist (:data:`SAFE_GLOBALS`);
  a file that needs anything else is refused with an error naming the file and
  the object it wanted, unless the caller opts in (``--allow-unsafe-checkpoint``).
  A truncated or corrupt file is reported as such, naming the file.

:func:`install` applies both; ``tools/train.py``/``tools/test.py`` call it, and
:class:`visdet.engine.hooks.PlainCheckpointHook` calls it when a Runner starts.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio import io as mmengine_io
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from visdet.errors import CheckpointError

#: Globals a visdet checkpoint may hold beyond what ``weights_only=True`` allows
#: by default (tensors, storages, dicts/OrderedDicts, lists, tuples, sets, str,
#: bytes, numbers, bool, None, torch dtypes/devices/sizes). Model, optimizer
#: (torch, bitsandbytes, D-Adaptation, the Muon hybrid) and scheduler states need
#: nothing more, and PlainCheckpointHook stores the log history as tensors, so
#: the list is empty: every extra entry would be code the file may call.
SAFE_GLOBALS: list[Any] = []

_allow_unsafe = False


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and putting it back at once.

    ``os.umask`` can only read by setting, which for that instant changes the mode
    of files other threads create; /proc/self/status reads it without side effect.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen partly written.

    The file gets the mode ``open(path, 'wb')`` would give it (``0o666`` less
    the umask): ``mkstemp`` makes its temporary ``0o600`` whatever the umask.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


#: The temporaries :func:`atomic_write_bytes` makes: ``.<name>.`` + mkstemp's 8 random characters + ``.tmp``.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of :func:`atomic_write_bytes` in ``folder``; the paths removed.

    A process killed during a write leaves its temporary behind (as large as the
    checkpoint). Call this where no other process is writing in ``folder``: when
    a run starts (:class:`visdet.engine.hooks.CheckpointHook` does, on rank 0).
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        if _TEMPORARY.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``/``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


def load_checkpoint_file(filename: str | os.PathLike, map_location: Any = None,
                         allow_unsafe: bool | None = None) -> Any:
    """``torch.load(filename, weights_only=True)`` with :data:`SAFE_GLOBALS`, and errors that name the file.

    Args:
        filename: A local checkpoint file.
        map_location: As for ``torch.load``.
        allow_unsafe: Load a file that needs other Python objects with
            ``weights_only=False`` (it can run code: only for files you trust).
            ``None`` uses what :func:`install` set.
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


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local loader: a checkpoint file, or the weights of a DeepSpeed checkpoint folder."""
    if os.path.isdir(os.path.expanduser(filename)):
        from visdet.engine.strategies.ds_weights import load_deepspeed_weights

        return load_deepspeed_weights(filename, map_location)
    return load_checkpoint_file(filename, map_location)


def install(allow_unsafe: bool = False) -> None:
    """Make mmengine write local files atomically and load local checkpoints safely (idempotent)."""
    global _allow_unsafe
    _allow_unsafe = allow_unsafe
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
