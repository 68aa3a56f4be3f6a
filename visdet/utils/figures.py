"""What visdet's pictures share: a trailing moving average and an atomic PNG write.

The training curves (curves.png), the comparison's overlays and the lr range
test all smooth a noisy loss the same way and must never leave a half-written
PNG behind (a run killed mid-save would otherwise show a broken picture).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (same length as the input)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def save_png(figure: Any, path: Path) -> Path:
    """Write a matplotlib Figure to ``path`` as PNG through a partial file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, format="png")
    os.replace(partial, path)
    return path
