"""Fixtures shared by every test directory; helpers live in ``testutils``."""
from __future__ import annotations

import logging

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
