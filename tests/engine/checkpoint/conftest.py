"""What a malicious checkpoint carries, for the loading tests of this folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


class Payload:
    """Pickles as a call to os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def payload() -> type[Payload]:
    """``payload(marker)``: an object whose unpickling would create ``marker``."""
    return Payload
