"""A whole comparison: check everything, train each optimizer in turn, then write the table and the plots.

The order is what makes a long comparison safe to start: every argument and
every run's config is checked first (a mistake costs seconds, not hours), then
the runs train one after another with a progress line after each, and the
table is rewritten after every run (the plots at the end), so a comparison
stopped half way still has the figures of the runs it finished. Running the same command
again continues it (finished runs are skipped, the interrupted one resumes).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from visdet.choosing.compare.hyperparams import load_hparams_file
from visdet.choosing.compare.plots import write_plots
from visdet.choosing.compare.runs import DIVERGED, FINISHED, NOT_RUN, Run, plan_runs, train
from visdet.choosing.compare.selection import parse_optimizers
from visdet.choosing.compare.table import METRIC, markdown, rows, write_tables
from visdet.choosing.progress import Progress
from visdet.engine.launch import load_config
from visdet.errors import ConfigError


@dataclass
class Comparison:
    """What a comparison produced: its runs (in the order asked), the files written, the plots' labels."""

    runs: list[Run]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    plotted: dict[str, list[str]] = field(default_factory=dict)

    def markdown(self) -> str:
        table, limit = rows(self.runs)
        return markdown(table, limit)


def result_text(run: Run) -> str:
    """What a progress line says of a run: its best and final mAP, or how it ended."""
    validations = [v["metrics"][METRIC] for v in (run.record or {}).get("validations", [])
                   if METRIC in v.get("metrics", {})]
    if run.status == FINISHED:
        best = f"best mAP {max(validations):.3f}, final {validations[-1]:.3f}" if validations else "no validation"
        return best + (" (done before, skipped)" if run.skipped else " (resumed)" if run.resumed else "")
    if run.status == DIVERGED:
        return "diverged: stopped by the non-finite guard" + (" (before, skipped)" if run.skipped else "")
    return f"{run.status}: {run.reason}"


def compare(config: str, optimizers: str, out_dir: str | None = None, iters: int | None = None,
            val_interval: int | None = None, hparams: str | None = None,
            cfg_options: dict[str, Any] | None = None, console: TextIO | None = None) -> Comparison:
    """Run the comparison; raises :class:`ConfigError` (naming the flag) before any training for bad input."""
    console = console if console is not None else sys.stdout
    choices = parse_optimizers(optimizers)
    overrides = load_hparams_file(hparams, choices)
    base = load_config(config, cfg_options)
    if "optim_wrapper" not in base or "optimizer" not in (base.optim_wrapper or {}):
        raise ConfigError("has no optim_wrapper.optimizer to replace: the comparison swaps that optimizer",
                          "CONFIG")
    target = Path(out_dir or Path("work_dirs") / f"compare_{Path(config).stem}")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"'{target}' is a file, not a folder; pass another --work-dir", "--work-dir")
    runs = plan_runs(base, choices, overrides, target, iters, val_interval)
    trainable = [r for r in runs if r.status != NOT_RUN]
    progress = Progress(len(runs), kind="run", stream=console)
    for run in runs:
        if run.status == NOT_RUN:
            progress.finished(run.name, f"not run: {run.reason}", counted=False)
            continue
        progress.start()
        train(run, console)
        progress.finished(run.name, result_text(run), counted=not run.skipped)
        write_tables(runs, target)  # a comparison stopped later still has the finished runs' figures
    result = Comparison(runs, target)
    if not trainable:  # nothing to compare: a mistake of the command (or this machine), exit status 2
        write_tables(runs, target)
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in runs)
        raise ConfigError(f"none of the optimizers can run, so nothing was trained ({reasons})", "--optimizers")
    return _write(result)


def _write(result: Comparison) -> Comparison:
    result.out_dir.mkdir(parents=True, exist_ok=True)
    result.plotted = write_plots(result.runs, result.out_dir)
    result.files = write_tables(result.runs, result.out_dir, result.plotted)
    result.files.update({name: result.out_dir / name for name in result.plotted})
    return result
