"""Keep the source scan's answers on disk between processes, used only while nothing they depend on changed.

Why: parsing the ~190 Python files of the installed optimizer packages costs
about a second at every ``import visdet``, yet the answers (which classes a
module exports, where each is defined, its docstring) are a few kilobytes. A
record holds one package's answers with what they were computed from: the
stamps (size, mtime_ns) of every path the scan probed, missing ones included,
the root and version of every package it read, torch's and Python's
versions, and the stamps of the scanner's own two files. It is used only when
all of them still match, so an upgrade, a reinstall or an edited file
rebuilds it.

A cache is never needed: a record that cannot be read (absent, corrupt, half
written, from another format) or written (read-only home, a full disk) means
"scan again", silently. Records are written to a temporary file and moved into
place with ``os.replace``, so a concurrent reader sees the old record or the
new one, never half of one.

Where: ``$VISDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/visdet``, else
``~/.cache/visdet``; one file per package and install location under ``scan/``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMAT = 1
CACHE_DIR_ENV = "VISDET_CACHE_DIR"

Stamp = list[int] | None  # [size, mtime_ns] of a regular file; None: no such file


def cache_dir() -> Path | None:
    """visdet's folder in the user's cache dir, or None when there is no home to put it in."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    try:
        return Path(base) / "visdet" if base else Path.home() / ".cache" / "visdet"
    except RuntimeError:  # no home directory can be determined
        return None


def file_stamp(path: str) -> Stamp:
    """Size and modification time of a regular file, or None when it is not one."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


@lru_cache(maxsize=None)
def distribution_version(name: str) -> str | None:
    """Installed version of a distribution, None if absent.

    Read from the ``Version:`` header of its metadata file: what
    ``importlib.metadata.version`` returns, without its full e-mail header
    parse (several ms per package, paid for every record at every import).
    """
    try:
        dist = importlib.metadata.distribution(name)
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    except (importlib.metadata.PackageNotFoundError, ValueError, OSError):
        return None
    for line in text.splitlines():
        if not line.strip():  # the headers end at the first blank line
            break
        if line.lower().startswith("version:"):
            return line.partition(":")[2].strip()
    return dist.version


@lru_cache(maxsize=1)
def environment_key() -> dict[str, Any]:
    """What every record depends on besides the scanned packages themselves (fixed for a process)."""
    return {
        "format": FORMAT,
        "python": sys.version,
        "torch": distribution_version("torch"),  # bases in torch are resolved live
        "code": [file_stamp(str(Path(__file__).with_name(n))) for n in ("scan.py", "scan_cache.py")],
    }


def record_path(top_level: str, root: Path) -> Path | None:
    """The record file for one package at one install location (two venvs do not overwrite each other)."""
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return folder / "scan" / f"{top_level}-{digest}.json"


def load(
    path: Path | None, packages_now: Callable[[str, str], list[str | None]]
) -> tuple[dict[str, Any], dict[str, Stamp], dict[str, Any]] | None:
    """``(modules, stamps, packages)`` of a record that is still valid, else None.

    ``packages_now(top_level, dist)`` says where and at which version a package
    is installed now, as the ``[root, version]`` the record stores.
    """
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["key"] != environment_key():
            return None
        modules, stamps, packages = data["modules"], data["stamps"], data["packages"]
        if not (isinstance(modules, dict) and isinstance(stamps, dict) and isinstance(packages, dict)):
            return None
        if not all(_well_formed(report) for report in modules.values()):
            return None
        for top_level, (dist, where) in packages.items():
            if packages_now(top_level, dist) != where:
                return None
        if any(file_stamp(p) != s for p, s in stamps.items()):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return modules, stamps, packages


def _well_formed(report: Any) -> bool:
    """Whether a stored module report has the shape the scan answers are read in."""
    if not isinstance(report, dict):
        return False
    names, where, doc = report.get("names"), report.get("where"), report.get("doc")
    return (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
        and isinstance(where, dict) and set(where) == set(names)
        and all(w is None or isinstance(w, str) or (isinstance(w, list) and len(w) == 2) for w in where.values())
        and isinstance(doc, dict) and all(isinstance(d, str) for d in doc.values())
    )


def save(path: Path | None, modules: dict[str, Any], stamps: dict[str, Stamp], packages: dict[str, Any]) -> None:
    """Write a record atomically; any failure leaves the cache as it was (or absent)."""
    if path is None:
        return
    data = {"key": environment_key(), "packages": packages, "stamps": stamps, "modules": modules}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
        tmp = None
    except (OSError, ValueError, TypeError):
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
