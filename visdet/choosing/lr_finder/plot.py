"""The range test's picture: loss and smoothed loss against the lr (log axis), both suggestions marked.

Drawn with matplotlib's ``Figure`` on an Agg canvas, as
``visdet/engine/hooks/curve_plot_hook.py`` draws: no display, no global
backend switched. Written atomically (a partial file, then ``os.replace``),
so a reader never sees half a PNG.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from visdet.utils.figures import save_png


def plot_range_test(path: Path, lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                    steepest: float | None, minimum: float | None, title: str = "lr range test") -> Path:
    """Draw the sweep into ``path`` (PNG) and return it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    finite = [(lr, raw, avg) for lr, raw, avg in zip(lrs, losses, smoothed) if math.isfinite(raw)]
    if finite:
        x, raw, avg = zip(*finite)
        ax.plot(x, raw, color="0.65", linewidth=1.0, label="loss")
        ax.plot(x, avg, color="C0", linewidth=2.0, label="smoothed loss")
        ax.set_ylim(*_y_range(raw, avg))
    for value, colour, name in ((steepest, "C3", "steepest descent"), (minimum, "C2", "minimum / 10")):
        if value is not None:
            ax.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{name}: {value:.2g}")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return save_png(figure, path)


def _y_range(raw: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float]:
    """Up to a quarter above the highest loss before the smoothed minimum: the diverging tail
    (often 1000 times the rest) would otherwise flatten the part of the curve that matters."""
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    top = 1.25 * max(max(raw[:lowest + 1]), max(smoothed[:lowest + 1]))
    bottom = min(min(raw), min(smoothed))
    return bottom - 0.05 * (top - bottom), top
