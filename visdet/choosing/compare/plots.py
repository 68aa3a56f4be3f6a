"""The comparison's overlaid curves: loss vs iteration, mAP vs iteration, mAP vs training wall time (PNGs).

One line per trained optimizer, drawn from the runs' records with
matplotlib's Figure and Agg canvas (no display, no global backend switched), as
visdet's CurvePlotHook does. Each function returns the labels it drew, so a
caller (and a test) knows which runs are in the picture.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from visdet.choosing.compare.runs import Run
from visdet.choosing.compare.table import METRIC
from visdet.utils.figures import moving_average, save_png

#: Iterations of the trailing mean drawn over the loss.
SMOOTH = 10
#: File names in the comparison's folder.
LOSS_PNG, MAP_ITER_PNG, MAP_TIME_PNG = "loss_vs_iter.png", "map_vs_iter.png", "map_vs_time.png"


def _series(run: Run, kind: str, metric: str) -> tuple[list[float], list[float]]:
    record: dict[str, Any] = run.record or {}
    if kind == "loss":
        points = [(i["iter"], i["loss"]) for i in record.get("iterations", [])
                  if isinstance(i.get("loss"), (int, float)) and math.isfinite(i["loss"])]
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
        return xs, moving_average(ys, SMOOTH)
    x_key = "iter" if kind == "iter" else "train_s"
    points = [(v[x_key], v["metrics"][metric]) for v in record.get("validations", []) if metric in v.get("metrics", {})]
    return [float(p[0]) for p in points], [float(p[1]) for p in points]


def _draw(runs: list[Run], kind: str, path: Path, metric: str) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    labels = []
    for run in runs:
        xs, ys = _series(run, kind, metric)
        if not xs:
            continue
        style = dict(linewidth=1.5) if kind == "loss" else dict(marker="o", linewidth=1.5)
        axes.plot(xs, ys, label=run.name, **style)
        labels.append(run.name)
    if kind == "loss":
        axes.set(xlabel="iteration", ylabel=f"loss (trailing mean of {SMOOTH})", title="training loss")
        if labels:
            axes.set_yscale("log")
    else:
        xlabel = "iteration" if kind == "iter" else "training time (s, in training steps)"
        axes.set(xlabel=xlabel, ylabel=metric, title=f"{metric} vs {xlabel.split(' (')[0]}")
    axes.grid(alpha=0.3)
    if labels:
        axes.legend(fontsize=8)
    figure.tight_layout()
    save_png(figure, path)
    return labels


def write_plots(runs: list[Run], out_dir: Path, metric: str = METRIC) -> dict[str, list[str]]:
    """The three PNGs in ``out_dir``; file name -> the optimizer labels drawn in it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: _draw(runs, kind, out_dir / name, metric)
            for name, kind in ((LOSS_PNG, "loss"), (MAP_ITER_PNG, "iter"), (MAP_TIME_PNG, "time"))}
