"""One Optuna trial as one real training run in this process, reporting each validation so Optuna can prune it.

Optuna's own integrations stop at frameworks it knows (Lightning, Keras,
...); mmengine has none, so :class:`TrialPruningHook` is the small bridge: an
mmengine hook that reports the validation metric to the trial after every
validation and stops the run when the pruner says so. :func:`run_trial` is
the objective around it: sample the space, apply it to the config, check the
result exactly as ``tools/train.py`` would (an invalid combination is a
pruned trial with its reason, trained for zero iterations), train, and return
the best validation value. Every trial records what the study, its outputs
and the benchmark read back: the overrides, the iterations actually trained,
the final value, seconds, its work dir and, when pruned, why.
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from mmengine.config import Config
from mmengine.hooks import Hook

from visdet.choosing.tuning.space import SearchSpace
from visdet.errors import ConfigError

DEFAULT_METRIC = "coco/bbox_mAP"


def import_optuna() -> Any:
    """Optuna, or a ConfigError saying how to install it (it is the optional ``tune`` extra)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError('Optuna is not installed; install the tuning extra: pip install -e ".[tune]"',
                          "optuna") from None
    return optuna


class MetricMissingError(ConfigError):
    """The validation reported no value for the objective's metric: a mistake in ``--metric``, not in a trial."""


class TrialPruningHook(Hook):
    """Reports ``metric`` to ``trial`` after each validation; raises ``optuna.TrialPruned`` when it should prune.

    It runs last among the ``after_val_epoch`` hooks (priority LOWEST), so the
    logger has recorded the validation and the checkpoint hook has saved (its
    writes are atomic) before the run is stopped: what is on disk is whole.
    The exception leaves ``runner.train()`` and reaches :func:`run_trial`.

    Args:
        trial: The Optuna trial of this run.
        metric: The validation metric that is the objective (maximized).
    """

    priority = "LOWEST"

    def __init__(self, trial: Any, metric: str = DEFAULT_METRIC) -> None:
        self.trial = trial
        self.metric = metric
        self.values: list[tuple[int, float]] = []  # (iteration, value) of each validation

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        optuna = import_optuna()
        metrics = metrics or {}
        if self.metric not in metrics:
            raise MetricMissingError(f"the validation reported no '{self.metric}'; it reported "
                                     f"{', '.join(sorted(metrics)) or 'nothing'}", "--metric")
        step, value = int(runner.iter), float(metrics[self.metric])
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{self.metric} is {value} at iteration {step}")
        self.values.append((step, value))
        self.trial.report(value, step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {step} with {self.metric} {value:.4f}")

    @property
    def best(self) -> float | None:
        return max((value for _, value in self.values), default=None)


def _jsonable(value: Any) -> Any:
    """The overrides as JSON (tuples become lists), which any Optuna storage can hold as a user attr."""
    return json.loads(json.dumps(value))


def _close_log_files(runner: Any) -> None:
    """Close and detach this run's log file handlers, so a study of many trials in one process keeps no files open.

    Detached, not only closed: a closed ``FileHandler`` reopens on the next
    record, in mmengine's ``'w'`` mode, which would empty the trial's log.
    """
    logger = getattr(runner, "logger", None)
    for handler in list(getattr(logger, "handlers", [])):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logger.removeHandler(handler)


def run_trial(trial: Any, cfg: Config, space: SearchSpace, work_dir: str, iters: int | None = None,
              val_interval: int | None = None, metric: str = DEFAULT_METRIC) -> float:
    """Train one trial of ``space`` on ``cfg`` in ``work_dir`` and return its best validation ``metric``.

    Args:
        trial: An Optuna trial (``study.ask()`` or the objective's argument).
        cfg: The base config (not changed).
        space: The search space the trial samples.
        work_dir: This trial's own directory (its checkpoints and logs go there).
        iters: Train for this many iterations, the schedule rescaled
            (:func:`visdet.choosing.budget.set_iteration_budget`); the config's own length when ``None``.
        val_interval: Validate (and report to the trial) every this many iterations (default ``iters // 4``).
        metric: The validation metric to maximize.

    Raises:
        optuna.TrialPruned: the sampled config fails visdet's checks (nothing is
            trained), the pruner stopped the run, or the run diverged; the
            ``pruned_reason`` user attr says which.
        ConfigError: a mistake shared by every trial (``--iters``, ``--metric``, no validation).
    """
    optuna = import_optuna()
    from visdet.choosing.budget import set_iteration_budget
    from visdet.choosing.prepare import check_run_config, prepare_runner
    from visdet.engine.launch import prepare_embedded_data
    from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError

    started = time.monotonic()
    overrides = space.sample(trial)
    trial.set_user_attr("overrides", _jsonable(overrides))
    trial.set_user_attr("work_dir", str(work_dir))
    run_cfg = space.apply(cfg, overrides)
    if not (run_cfg.get("val_dataloader") and run_cfg.get("val_evaluator") and run_cfg.get("val_cfg") is not None):
        raise ConfigError(f"a trial's objective is its validation '{metric}', but the config does not validate; "
                          f"it needs val_dataloader, val_evaluator and val_cfg", "val_dataloader")
    if iters:
        prepare_embedded_data(run_cfg)  # the budget counts the train set's images, which may not exist yet
        set_iteration_budget(run_cfg, iters, val_interval)

    hook = TrialPruningHook(trial, metric)
    runner = None
    reason: str | None = None

    def finish() -> None:
        trial.set_user_attr("iterations", int(runner.iter) if runner is not None else 0)
        trial.set_user_attr("final_value", hook.values[-1][1] if hook.values else None)
        trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
        if reason is not None:
            trial.set_user_attr("pruned_reason", reason)

    try:
        try:
            check_run_config(run_cfg)
        except (ValueError, TypeError) as error:  # ConfigError is a ValueError; a check may reject a raw value too
            reason = f"invalid config: {error}"
            raise optuna.TrialPruned(reason) from None
        try:
            name = f"trial_{trial.number}_{time.time_ns()}"
            # prepare_runner names the trial's Visualizer after it (mmengine keeps one per name).
            runner = prepare_runner(run_cfg, work_dir=str(work_dir), experiment_name=name)
            runner.register_hook(hook, priority="LOWEST")
            runner.train()
        except optuna.TrialPruned as error:
            reason = str(error)
            raise
        except NonFiniteTrainingError as error:
            reason = f"diverged: {error}"
            raise optuna.TrialPruned(reason) from None
        except ConfigError as error:
            if isinstance(error, MetricMissingError):
                raise
            reason = f"invalid config: {error}"  # found only when the runner built it (after the checks)
            raise optuna.TrialPruned(reason) from None
        finally:
            if runner is not None:
                if reason is not None:
                    runner.visualizer.close()  # the LoggerHook's after_run, which a stopped run skips
                _close_log_files(runner)
    finally:
        finish()
    if hook.best is None:
        raise ConfigError(f"the run validated no '{metric}' (val_interval larger than the run?)", "--val-interval")
    return hook.best
