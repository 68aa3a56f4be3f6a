"""Checkpoint files that are never seen half-written: atomic writes into mmengine's local backend.

mmengine 0.10.x writes every local file (checkpoints, the ``last_checkpoint``
pointer) with ``open(path, 'wb').write(...)``: a kill during a save leaves a
truncated file where the previous good one was, and ``--resume`` then fails on
it. :func:`atomic_write_bytes` writes a temporary file in the same folder,
fsyncs it and renames it over the target, so a reader sees the old file or the
new one, never a mix; the file gets the mode ``open`` would give it (``0o666``
less the umask). :class:`AtomicLocalBackend` is mmengine's ``local`` storage
backend with that write (:mod:`visdet.engine.checkpoint.install` registers it).
A process killed mid-write leaves its ``.<name>.XXXXXXXX.tmp``;
:func:`remove_stale_temporaries` removes them when the next run starts
(visdet's ``CheckpointHook`` calls it). (mmengine's CheckpointHook writes the
small ``last_checkpoint`` pointer with the builtin ``open``, not through the backend.)
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from mmengine.fileio import LocalBackend


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
