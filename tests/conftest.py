"""Fixtures shared by every test directory; helpers live in ``testutils``."""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

# The optimizer registry caches its source scan (visdet/engine/optim/catalog/scan_cache.py); the
# suite, and the tools it runs as subprocesses, keep theirs in a folder of their own, never the user's.
os.environ.setdefault("VISDET_CACHE_DIR", tempfile.mkdtemp(prefix="visdet-test-cache-"))

import pytest
import torch
from mmengine.logging import MMLogger

from testutils import SmallNet


#: Why a ``@pytest.mark.cuda`` test is skipped on a machine without CUDA (every CI machine so far).
CUDA_SKIP_REASON = ("needs a CUDA device (torch.cuda.is_available() is False here); "
                    "bash tools/cuda_check.sh runs every such test on a GPU machine")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``cuda`` where there is no CUDA device: one marker, one reason, one place."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=CUDA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


@contextlib.contextmanager
def records_logged(level: int) -> Iterator[list[logging.LogRecord]]:
    """Records at ``level`` and above of the 'current' mmengine logger (where print_log(logger='current') goes);
    the logger is opened to ``level`` meanwhile if it was set higher."""
    logger = MMLogger.get_current_instance()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def warnings_logged():
    """WARNING records of the 'current' mmengine logger."""
    with records_logged(logging.WARNING) as records:
        yield records


@pytest.fixture
def info_records():
    """INFO records of the 'current' mmengine logger."""
    with records_logged(logging.INFO) as records:
        yield records
