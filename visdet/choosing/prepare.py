"""A checked config to a ready Runner in this process: the steps of ``tools/train.py``, for tools that train.

The lr finder and the tuner train inside their own process (a trial's pruning
hook talks to Optuna directly), so they need exactly what ``tools/train.py``
does between reading a config and ``runner.train()``: the work dir, the
strategy and whole-config checks (a mistake is a :class:`ConfigError` before
any work), the embedded data set, visdet's checkpoint I/O. Keeping those steps
in one place means a config these tools accept is one ``tools/train.py``
accepts, and the reverse.
"""
from __future__ import annotations

import time

from mmengine.config import Config

from visdet.engine.launch import (add_vis_backends, build_runner, prepare_embedded_data, prepare_strategy)
from visdet.engine.preflight import check_config


def check_run_config(cfg: Config) -> None:
    """Every check ``tools/train.py`` makes before it builds anything (raises :class:`ConfigError`)."""
    prepare_strategy(cfg)
    check_config(cfg)


def prepare_runner(cfg: Config, work_dir: str, experiment_name: str | None = None):
    """Check ``cfg``, generate its embedded data, and build its Runner writing to ``work_dir``.

    ``experiment_name`` keeps runners built in one process apart (mmengine keys
    its message hub and logger by it; its default is the second the run
    started, which two quick runs can share). The Visualizer is named after it
    too: mmengine keeps one Visualizer per name for the process, and the
    shipped configs all call theirs 'visualizer', so a second run would write
    its scalars into the first one's (perhaps deleted) folder.
    """
    cfg.work_dir = work_dir
    cfg.experiment_name = experiment_name or f"run_{time.time_ns()}"
    visualizer = cfg.get("visualizer") or dict(type="Visualizer")
    visualizer["name"] = cfg.experiment_name
    cfg.visualizer = visualizer
    add_vis_backends(cfg)
    check_run_config(cfg)
    prepare_embedded_data(cfg)
    return build_runner(cfg)
