"""Fixtures shared by every test directory; helpers live in ``testutils``."""
from __future__ import annotations

import pytest
import torch

from testutils import SmallNet


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()
