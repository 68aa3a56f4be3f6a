"""The whole range test: check the settings and the optimizer, build the Runner, sweep, suggest, write.

:func:`run_range_test` is what ``tools/lr_find.py`` runs; tests and scripts
that need the Runner itself (to add a hook, to time it) call
:func:`build_range_test_runner`, ``runner.train()`` and :func:`finish`.
The config keeps its model, data, optimizer wrapper and hooks; its train loop
becomes :class:`~visdet.choosing.lr_finder.loop.LrRangeTestLoop` and it loses
what would change the lr or cost time without informing the sweep: the
``param_scheduler``, validation and the checkpoint hook. Results go to
``<work_dir>/lr_find.json`` and ``<work_dir>/lr_find.png``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config

from visdet.choosing.lr_finder import loop as _loop  # noqa: F401  registers LrRangeTestLoop in visdet's LOOPS
from visdet.choosing.lr_finder.applicability import LrTarget, lr_target
from visdet.choosing.lr_finder.plot import plot_range_test
from visdet.choosing.lr_finder.suggestion import min_at_start, min_loss_lr, steepest_descent_lr
from visdet.choosing.prepare import prepare_runner
from visdet.errors import ConfigError

JSON_NAME, PNG_NAME = "lr_find.json", "lr_find.png"


@dataclass(frozen=True)
class RangeTestSettings:
    """The sweep's parameters (the tool's flags, which the error messages name)."""

    start: float = 1e-7
    end: float = 1.0
    iters: int = 100
    smooth: float = 0.98
    diverge: float = 4.0

    def check(self) -> None:
        """A :class:`ConfigError` naming the flag for a value the sweep cannot use."""
        if not (math.isfinite(self.start) and self.start > 0):
            raise ConfigError(f"must be a learning rate > 0, got {self.start}", "--start")
        if not (math.isfinite(self.end) and self.end > self.start):
            raise ConfigError(f"must be above --start ({self.start:g}), got {self.end:g}: the lr rises from "
                              "--start to --end", "--end")
        if int(self.iters) != self.iters or self.iters < 2:
            raise ConfigError(f"must be an integer of at least 2 (the sweep needs a first and a last lr), got "
                              f"{self.iters}", "--iters")
        if not 0 <= self.smooth < 1:
            raise ConfigError(f"is the moving average's factor, in [0, 1) (0: no smoothing), got {self.smooth}",
                              "--smooth")
        if not (math.isfinite(self.diverge) and self.diverge > 1):
            raise ConfigError(f"must be > 1 (stop when the smoothed loss exceeds this times its minimum), got "
                              f"{self.diverge}", "--diverge")


@dataclass(frozen=True)
class RangeTestResult:
    """The suggestions and where the sweep's record went."""

    lr_key: str
    config_lr: float
    steepest: float | None
    minimum: float | None
    iterations: int
    stop_reason: str
    lowest_at_start: bool
    restore_seconds: float
    json_path: Path
    png_path: Path

    @property
    def suggested(self) -> float | None:
        """The lr to use: steepest descent (fastai's and Lightning's first choice), else minimum / 10."""
        return self.steepest if self.steepest is not None else self.minimum

    def cfg_option(self) -> str | None:
        """``--cfg-options optim_wrapper.optimizer.lr=...`` for the suggested lr (None without one)."""
        return None if self.suggested is None else f"--cfg-options {self.lr_key}={self.suggested:.3g}"


def configure(cfg: Config, settings: RangeTestSettings) -> LrTarget:
    """Check ``settings`` and the optimizer, and turn ``cfg`` into the range test's config in place."""
    settings.check()
    target = lr_target(cfg)
    cfg.train_cfg = dict(type="LrRangeTestLoop", max_iters=int(settings.iters), start=settings.start,
                         end=settings.end, base_lr=target.value, smooth=settings.smooth, diverge=settings.diverge)
    cfg.param_scheduler = None
    cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator = None, None, None
    hooks = cfg.setdefault("default_hooks", {})
    hooks["checkpoint"] = None
    logger = dict(hooks.get("logger") or dict(type="LoggerHook"))
    logger["interval"] = max(1, min(int(logger.get("interval", 50)), int(settings.iters) // 10 or 1))
    hooks["logger"] = logger
    log_processor = dict(cfg.get("log_processor") or dict(type="LogProcessor"))
    log_processor.update(by_epoch=False, window_size=max(1, min(int(log_processor.get("window_size", 50)),
                                                                logger["interval"])))
    cfg.log_processor = log_processor
    return target


def build_range_test_runner(cfg: Config, settings: RangeTestSettings, work_dir: str):
    """(Runner, lr target) ready for ``runner.train()``; every mistake is a ConfigError before building."""
    target = configure(cfg, settings)
    name = f"lr_find_{time.time_ns()}"
    return prepare_runner(cfg, work_dir, experiment_name=name), target  # checks the whole config first


def finish(runner: Any, target: LrTarget, settings: RangeTestSettings, seconds: float | None = None,
           config_path: str | None = None) -> RangeTestResult:
    """Suggest from the sweep's record and write ``lr_find.json`` and ``lr_find.png`` to the work dir."""
    record = runner.train_loop.record
    steepest = steepest_descent_lr(record.lrs, record.smoothed)
    minimum = min_loss_lr(record.lrs, record.smoothed)
    work_dir = Path(runner.work_dir)
    png = plot_range_test(work_dir / PNG_NAME, record.lrs, record.losses, record.smoothed, steepest, minimum,
                          title=f"lr range test: {target.type_name}")
    result = RangeTestResult(lr_key=target.key, config_lr=target.value, steepest=steepest, minimum=minimum,
                             iterations=len(record.lrs), stop_reason=record.stop_reason,
                             lowest_at_start=min_at_start(record.lrs, record.smoothed),
                             restore_seconds=record.restore_seconds, json_path=work_dir / JSON_NAME, png_path=png)
    payload = {
        "config": config_path, "optimizer": target.type_name, "lr_key": target.key, "config_lr": target.value,
        "settings": asdict(settings), "iterations": result.iterations, "stop_reason": record.stop_reason,
        "suggestions": {"steepest_descent": steepest, "min_loss_div_10": minimum},
        "lowest_at_start": result.lowest_at_start,
        "cfg_options": result.cfg_option(), "seconds": seconds, "snapshot_seconds": record.snapshot_seconds,
        "restore_seconds": record.restore_seconds,
        "points": [{"lr": lr, "group_lrs": groups, "loss": _finite_or_none(loss), "smoothed": _finite_or_none(avg)}
                   for lr, groups, loss, avg in zip(record.lrs, record.group_lrs, record.losses, record.smoothed)],
    }
    partial = result.json_path.with_name(f".{JSON_NAME}.partial")
    partial.write_text(json.dumps(payload, indent=1))
    os.replace(partial, result.json_path)
    return result


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def run_range_test(cfg: Config, settings: RangeTestSettings, work_dir: str,
                   config_path: str | None = None) -> RangeTestResult:
    """Run the whole range test on ``cfg`` and write its results under ``work_dir``."""
    runner, target = build_range_test_runner(cfg, settings, work_dir)
    began = time.perf_counter()
    runner.train()
    return finish(runner, target, settings, seconds=time.perf_counter() - began, config_path=config_path)
