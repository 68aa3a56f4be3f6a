"""The comparison's table: one row per optimizer, from the runs' records, as markdown, CSV and JSON.

"mAP at equal wall time" answers "which would I pick if I could afford only
the fastest run's training time": T is the shortest training time (validation
excluded) among the finished runs, and each run's figure is the last
validation it had done by T. Runs differ in seconds per iteration, so at the
same iteration budget the slower optimizers would otherwise look better than
they are for their cost.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from visdet.choosing.compare.runs import DIVERGED, FINISHED, Run
from visdet.engine.checkpoint.atomic import atomic_write_bytes

#: The metric the table ranks by (visdet's COCO evaluator).
METRIC = "coco/bbox_mAP"

COLUMNS = ["optimizer", "hyperparameters", "source", "best mAP", "final mAP", "mAP at T", "s/iter",
           "state MiB", "peak MiB", "diverged", "status"]


def _maps(record: dict[str, Any] | None, metric: str) -> list[tuple[float, float]]:
    """(training seconds, mAP) of every validation with the metric."""
    out = []
    for validation in (record or {}).get("validations", []):
        value = validation.get("metrics", {}).get(metric)
        if isinstance(value, (int, float)):
            out.append((float(validation.get("train_s", math.nan)), float(value)))
    return out


def equal_time(runs: list[Run]) -> float | None:
    """T: the shortest training time among the finished runs (None when none finished)."""
    times = [float(r.record["train_seconds"]) for r in runs
             if r.status == FINISHED and r.record and r.record.get("train_seconds") is not None]
    return min(times) if times else None


def rows(runs: list[Run], metric: str = METRIC) -> tuple[list[dict[str, Any]], float | None]:
    """One row per run (plain values, None where there is no figure) and T."""
    limit = equal_time(runs)
    out = []
    for run in runs:
        record = run.record or {}
        maps = _maps(record, metric) if record else []
        by_t = [m for t, m in maps if limit is not None and t <= limit + 1e-9]
        state = record.get("optimizer_state_bytes")
        nonfinite = record.get("nonfinite") or {}
        skips = int(nonfinite.get("skips", 0) or 0)
        if run.status == DIVERGED:
            diverged = f"stopped after {run.stopped_after} skipped steps in a row" if run.stopped_after else "stopped"
        else:
            diverged = f"{skips} skipped steps" if skips else ("no" if record else None)
        status = run.status if not run.reason else f"{run.status}: {run.reason}"
        out.append({
            "optimizer": run.name,
            "hyperparameters": run.hyperparams.text() if run.hyperparams else None,
            "source": run.hyperparams.source if run.hyperparams else None,
            "best mAP": max(m for _, m in maps) if maps else None,
            "final mAP": maps[-1][1] if maps else None,
            "mAP at T": by_t[-1] if by_t else None,
            "s/iter": record.get("seconds_per_iter"),
            "state MiB": state / 2**20 if isinstance(state, (int, float)) else None,
            "peak MiB": record.get("peak_memory_mib"),
            "diverged": diverged,
            "status": status,
        })
    return out, limit


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(table: list[dict[str, Any]], limit: float | None, metric: str = METRIC) -> str:
    """The table in GitHub markdown, with what T and the units are."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for row in table]
    when = (f"{limit:.1f} s of training steps, the shortest finished run's; 'mAP at T' is each run's last "
            "validation by then") if limit is not None else "none (no run finished)"
    lines += ["", f"mAP: {metric}. T (equal wall time) = {when}. s/iter: median seconds of a training step; "
                  "state MiB: bytes held by the optimizer's state tensors, measured; peak MiB: CUDA allocated "
                  "peak on a GPU, else the process's peak RSS."]
    return "\n".join(lines) + "\n"


def write_tables(runs: list[Run], out_dir: Path, plotted: dict[str, list[str]] | None = None,
                 metric: str = METRIC) -> dict[str, Path]:
    """``comparison.md``, ``.csv`` and ``.json`` in ``out_dir`` (each written atomically); the paths.

    ``plotted`` (PNG name -> the optimizers drawn in it) goes in the JSON, so a reader knows what each plot shows.
    """
    table, limit = rows(runs, metric)
    csv_text = io.StringIO()
    writer = csv.DictWriter(csv_text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in table)
    document = dict(metric=metric, equal_time_s=limit, rows=table, plots=plotted or {},
                    runs={r.name: dict(status=r.status, reason=r.reason, work_dir=str(r.work_dir),
                                       hyperparameters=r.hyperparams.values if r.hyperparams else None)
                          for r in runs})
    texts = {"md": markdown(table, limit, metric), "csv": csv_text.getvalue(),
             "json": json.dumps(document, indent=1, default=str)}
    paths = {}
    for ext, text in texts.items():
        paths[ext] = out_dir / f"comparison.{ext}"
        atomic_write_bytes(text.encode(), paths[ext])
    return paths
