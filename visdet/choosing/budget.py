"""Give a config an iteration budget with the same schedule shape: what a comparison or a trial trains for.

A comparison or a study trains one config many times, usually for fewer
iterations than the config's own schedule (``--iters N``). Cutting the loop
alone would leave the warmup and the cosine decay sized for the full run, so
the optimizers would be compared at a high, undecayed learning rate. Here the
whole schedule is rescaled: every scheduler's ``begin``/``end`` (and
``T_max``, ``milestones``, ``step_size`` where given) becomes an iteration
count in the same proportion of the new budget as of the old one, and the
train loop becomes mmengine's iteration-based one with validations (and
checkpoints, so an interrupted run resumes) every ``val_interval``
iterations. mmengine has no such rescaling (its ``convert_to_iter_based``
converts units, not budgets).
"""
from __future__ import annotations

import copy
import math
from typing import Any

from mmengine.config import Config

from visdet.errors import ConfigError

#: Validations in a budgeted run when ``val_interval`` is not given.
DEFAULT_VALIDATIONS = 4


def iterations_per_epoch(cfg: Config) -> int:
    """Training iterations in one epoch of ``cfg``'s train dataloader (builds its data set, which must exist)."""
    from visdet.registry import DATASETS

    loader = cfg.train_dataloader
    batch = int(loader.get("batch_size", 1))
    dataset = DATASETS.build(copy.deepcopy(loader.dataset))
    drop_last = bool(loader.get("drop_last", False))
    return max(1, len(dataset) // batch if drop_last else math.ceil(len(dataset) / batch))


def total_iterations(cfg: Config, per_epoch: int | None = None) -> int:
    """The config's own training length in iterations (epoch-based loops times their epoch length)."""
    train_cfg = cfg.get("train_cfg") or {}
    if "max_iters" in train_cfg:
        return int(train_cfg["max_iters"])
    if "max_epochs" not in train_cfg:
        raise ConfigError("needs max_epochs or max_iters to be given a budget", "train_cfg")
    return int(train_cfg["max_epochs"]) * (per_epoch if per_epoch is not None else iterations_per_epoch(cfg))


def _scaled(value: float, scale: float, floor: int = 0) -> int:
    return max(floor, int(round(value * scale)))


def rescale_scheduler(scheduler: dict[str, Any], per_epoch: int, old_total: int, new_total: int) -> dict[str, Any]:
    """One ``param_scheduler`` entry, in iterations, occupying the same fraction of ``new_total`` as before."""
    out = dict(scheduler)
    unit = per_epoch if out.pop("by_epoch", True) else 1  # mmengine's schedulers default to by_epoch=True
    out.pop("convert_to_iter_based", None)
    scale = new_total / old_total
    begin = float(out.get("begin", 0)) * unit
    end_given = out.get("end")
    end = old_total if end_given is None or end_given == math.inf else min(float(end_given) * unit, old_total)
    out["begin"] = _scaled(begin, scale)
    out["end"] = max(out["begin"] + 1, _scaled(end, scale))
    for key in ("T_max", "step_size", "total_iters"):
        if key in out and out[key] is not None:
            out[key] = _scaled(float(out[key]) * unit, scale, floor=1)
    if out.get("milestones") is not None:
        out["milestones"] = [_scaled(float(m) * unit, scale, floor=1) for m in out["milestones"]]
    out["by_epoch"] = False
    return out


def set_iteration_budget(cfg: Config, iters: int, val_interval: int | None = None,
                         per_epoch: int | None = None) -> None:
    """Train ``cfg`` for ``iters`` iterations, validating and checkpointing every ``val_interval``, in place.

    ``per_epoch`` (iterations per epoch) is computed from the train data set when not given.
    """
    if int(iters) < 1:
        raise ConfigError(f"must be at least 1, got {iters}", "--iters")
    iters = int(iters)
    val_interval = int(val_interval) if val_interval else max(1, iters // DEFAULT_VALIDATIONS)
    if val_interval < 1 or val_interval > iters:
        raise ConfigError(f"must be between 1 and --iters ({iters}), got {val_interval}", "--val-interval")
    per_epoch = per_epoch if per_epoch is not None else iterations_per_epoch(cfg)
    old_total = total_iterations(cfg, per_epoch)
    schedulers = cfg.get("param_scheduler")
    if schedulers:
        listed = schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]
        cfg.param_scheduler = [rescale_scheduler(dict(s), per_epoch, old_total, iters) for s in listed]
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=val_interval)
    hooks = cfg.setdefault("default_hooks", {})
    checkpoint = dict(hooks.get("checkpoint") or dict(type="CheckpointHook"))
    checkpoint.update(by_epoch=False, interval=val_interval)
    hooks["checkpoint"] = checkpoint
    logger = dict(hooks.get("logger") or dict(type="LoggerHook"))
    logger["interval"] = max(1, min(int(logger.get("interval", 50)), val_interval))
    hooks["logger"] = logger
    log_processor = dict(cfg.get("log_processor") or dict(type="LogProcessor"))
    log_processor["by_epoch"] = False
    log_processor["window_size"] = max(1, min(int(log_processor.get("window_size", 50)), logger["interval"]))
    cfg.log_processor = log_processor
