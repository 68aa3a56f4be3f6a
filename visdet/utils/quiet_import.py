"""Import optional backends without their chatter reaching the terminal.

bitsandbytes and DeepSpeed print at import ("Setting accelerator to CPU",
native-library notices), partly from C code, so redirecting ``sys.stdout`` is
not enough and would also leave their loggers bound to a dead stream. The
file descriptors are redirected instead, and whatever was printed is re-logged
at DEBUG level on the ``visdet`` logger, so nothing is lost. A backend that
configures logging at import (grokadamw 0.1 calls ``logging.basicConfig(level=INFO)``,
after which every library's INFO records print) has the root logger's handlers and
level put back: configuring the process's logging is the application's job.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from types import ModuleType

logger = logging.getLogger("visdet.engine.optim")


@contextlib.contextmanager
def captured_output(label: str) -> Iterator[None]:
    """Send fd 1/2 and Python warnings to a log record instead of the terminal."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved: list[tuple[int, int]] = []
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:
                    continue
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                logger.debug("output while importing %s:\n%s", label, text)
            for w in caught:
                logger.debug("warning while importing %s: %s", label, w.message)


def quiet_import(module: str) -> ModuleType:
    """``importlib.import_module`` with the backend's import-time output captured."""
    if module in sys.modules and sys.modules[module] is not None:
        return sys.modules[module]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with captured_output(module):
            return importlib.import_module(module)
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
