"""Fixtures shared by every test directory; helpers live in ``testutils``."""
from __future__ import annotations

import logging
import os
import tempfile

# The optimizer registry caches its source scan (visdet/engine/optim/catalog/scan_cache.py); the
# suite, and the tools it runs as subprocesses, keep theirs in a folder of their own, never the user's.
os.environ.setdefault("VISDET_CACHE_DIR", tempfile.mkdtemp(prefix="visdet-test-cache-"))

import pytest
import torch
from mmengine.logging import MMLogger

from testutils import SmallNet


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


@pytest.fixture
def warnings_logged():
    """WARNING records of the 'current' mmengine logger (where print_log(logger='current') goes)."""
    logger = MMLogger.get_current_instance()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
