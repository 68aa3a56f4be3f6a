#!/usr/bin/env python
"""Preview a config's schedule: lr, momentum and weight decay of every parameter group, per iteration.

Nothing is trained and no image is read: the model is built from the config
and its optimizer by visdet's real constructor, then mmengine's real parameter
schedulers (``param_scheduler``) are stepped as ``ParamSchedulerHook`` steps
them, over a loop of the config's length (by-epoch schedules take the train
loader's length, computed from the data set's size, ``--dataset-size`` or the
embedded data). As MMDetection's ``tools/analysis_tools/vis_scheduler.py``,
the result is a PNG; ``--print`` also prints every value as CSV.

Examples:
    python tools/vis_scheduler.py configs/faster_rcnn_adamw.py --out schedule.png
    python tools/vis_scheduler.py CONFIG --print --cfg-options optim_wrapper.optimizer.lr=1e-4
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import os.path as osp
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import DictAction  # noqa: E402

from visdet.errors import ConfigError  # noqa: E402

#: The values plotted, each read from a parameter group (momentum: ``betas[0]`` for Adam-like optimizers).
SERIES = ("lr", "momentum", "weight_decay")


@dataclass
class Schedule:
    """The values of every parameter group at each iteration, and how the loop was laid out."""

    iters: int
    iters_per_epoch: int | None
    groups: list[str]
    values: dict[str, list[list[float | None]]] = field(default_factory=lambda: {s: [] for s in SERIES})

    def csv_lines(self) -> list[str]:
        lines = ["iter,group," + ",".join(SERIES)]
        for i in range(self.iters):
            for g in range(len(self.groups)):
                cells = ["" if self.values[s][i][g] is None else f"{self.values[s][i][g]:.10g}" for s in SERIES]
                lines.append(f"{i},{g}," + ",".join(cells))
        return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file path")
    parser.add_argument("--out", help="PNG to write (default: <config name>_schedule.png here)")
    parser.add_argument("--print", action="store_true", help="also print every value as CSV on stdout")
    parser.add_argument("--dataset-size", type=int, help="train images, instead of counting the data set")
    parser.add_argument("--world-size", type=int, default=1, help="processes the run will have (default 1)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. optim_wrapper.optimizer.lr=1e-4")
    return parser.parse_args(argv)


def momentum_of(group: dict[str, Any]) -> float | None:
    """A group's momentum: ``momentum``, else ``betas[0]`` (Adam-like), else None (no momentum)."""
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def group_labels(optimizer: Any, model: Any) -> list[str]:
    """``group i: N tensors, e.g. <first name>`` for each parameter group, to tell the lines apart."""
    names = {id(p): n for n, p in model.named_parameters()}
    labels = []
    for index, group in enumerate(optimizer.param_groups):
        first = next((names[id(p)] for p in group["params"] if id(p) in names), "?")
        labels.append(f"group {index}: {len(group['params'])} tensors, e.g. {first}")
    return labels


def loop_length(cfg: Any, iters_per_epoch: int | None) -> tuple[int, bool]:
    """(iterations of the whole run, whether the loop is by epoch), from ``train_cfg``."""
    train_cfg = cfg.get("train_cfg") or {}
    by_epoch = train_cfg.get("by_epoch", "max_epochs" in train_cfg) or "Epoch" in str(train_cfg.get("type", ""))
    if by_epoch:
        if "max_epochs" not in train_cfg:
            raise ConfigError("an epoch-based loop needs max_epochs", "train_cfg.max_epochs")
        return int(train_cfg["max_epochs"]) * int(iters_per_epoch or 1), True
    if "max_iters" not in train_cfg:
        raise ConfigError("needs max_epochs or max_iters for the length of the run", "train_cfg")
    return int(train_cfg["max_iters"]), False


def train_loader_length(cfg: Any, dataset_size: int | None, world_size: int) -> int:
    """Batches per epoch on one process: ceil(ceil(images / world_size) / batch_size), as DefaultSampler gives."""
    loader = cfg.get("train_dataloader")
    if not loader:
        raise ConfigError("is needed for the length of an epoch; or pass --dataset-size", "train_dataloader")
    if dataset_size is None:
        from visdet.engine.launch import prepare_embedded_data
        from visdet.registry import DATASETS

        prepare_embedded_data(cfg)  # the embedded data is generated on first use, as tools/train.py does
        dataset_size = len(DATASETS.build(copy.deepcopy(loader["dataset"])))
    per_process = math.ceil(dataset_size / world_size)
    batch_size = int(loader.get("batch_size", 1))
    drop_last = bool(loader.get("drop_last", False))
    return per_process // batch_size if drop_last else math.ceil(per_process / batch_size)


def simulate(cfg: Any, dataset_size: int | None = None, world_size: int = 1) -> Schedule:
    """Build the real optimizer and schedulers of ``cfg`` and record every group's values per iteration."""
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get("default_scope", "visdet"))
    from visdet.engine.optim import build_optim_wrapper
    from visdet.registry import MODELS, PARAM_SCHEDULERS

    epoch_length = train_loader_length(cfg, dataset_size, world_size)
    total, by_epoch_loop = loop_length(cfg, epoch_length)
    model = MODELS.build(cfg.model)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    configs = cfg.get("param_scheduler") or []
    configs = [configs] if isinstance(configs, dict) else list(configs)
    schedulers = []
    for scheduler in configs:  # as mmengine's Runner.build_param_scheduler
        scheduler = copy.deepcopy(dict(scheduler))
        by_epoch = scheduler.get("by_epoch", True)
        scheduler.setdefault("end", total // epoch_length if by_epoch else total)
        schedulers.append(PARAM_SCHEDULERS.build(
            scheduler, default_args=dict(optimizer=optim_wrapper, epoch_length=epoch_length)))
    groups = optim_wrapper.optimizer.param_groups
    # optimizer.param_groups: the wrapper's own list adds mmengine's base-lr record (base_param_settings)
    schedule = Schedule(total, epoch_length if by_epoch_loop else None, group_labels(optim_wrapper.optimizer, model))
    # mmengine warns that a scheduler steps before the optimizer: here nothing is optimised, by design.
    warnings.filterwarnings("ignore", message="Detected call of `scheduler.step", category=UserWarning)
    for iteration in range(total):  # the values each iteration's update uses, then ParamSchedulerHook's steps
        schedule.values["lr"].append([float(g["lr"]) for g in groups])
        schedule.values["momentum"].append([momentum_of(g) for g in groups])
        schedule.values["weight_decay"].append([float(g.get("weight_decay", 0.0)) for g in groups])
        for scheduler in schedulers:
            if not scheduler.by_epoch:
                scheduler.step()
        if by_epoch_loop and (iteration + 1) % epoch_length == 0:
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
    return schedule


def plot(schedule: Schedule, out: str, title: str) -> None:
    """lr, momentum and weight decay against the iteration, one line per group, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(SERIES), 1, figsize=(10, 3 * len(SERIES)), sharex=True)
    steps = range(schedule.iters)
    for axis, series in zip(axes, SERIES):
        for index, label in enumerate(schedule.groups):
            values = [row[index] for row in schedule.values[series]]
            if all(v is not None for v in values):
                axis.plot(steps, values, label=label)
        axis.set_ylabel(series)
        axis.grid(alpha=0.3)
    if schedule.iters_per_epoch:
        axes[-1].set_xlabel(f"iteration ({schedule.iters_per_epoch} per epoch)")
    else:
        axes[-1].set_xlabel("iteration")
    axes[0].set_title(title)
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    from visdet.engine.launch import load_config, run_reporting_errors

    args = parse_args(argv)

    def preview() -> None:
        cfg = load_config(args.config, args.cfg_options)
        from visdet.engine.preflight import check_config

        check_config(cfg)
        for name, value in (("--dataset-size", args.dataset_size), ("--world-size", args.world_size)):
            if value is not None and value < 1:
                raise ConfigError(f"must be a positive integer, got {value}", name)
        if args.print:  # stdout is the CSV: the build's INFO lines (implementation chosen, ...) stay out of it
            from mmengine.logging import MMLogger

            MMLogger.get_current_instance().setLevel(logging.WARNING)
        schedule = simulate(cfg, args.dataset_size, args.world_size)
        out = args.out or f"{osp.splitext(osp.basename(args.config))[0]}_schedule.png"
        if osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
        plot(schedule, out, osp.basename(args.config))
        if args.print:
            print("\n".join(schedule.csv_lines()))
        print(f"{schedule.iters} iterations, {len(schedule.groups)} parameter groups: {out}", file=sys.stderr)

    return run_reporting_errors(preview)


if __name__ == "__main__":
    sys.exit(main())
