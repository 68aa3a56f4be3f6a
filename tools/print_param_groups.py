#!/usr/bin/env python
"""Dry run of the optimizer a config builds: each parameter's group, lr, weight decay and route.

Builds the model (no weights are loaded, no data is read) and the plan the
optimizer constructor would follow, then prints it. Config mistakes are
reported the way training would report them, before any training work.

Examples:
    python tools/print_param_groups.py configs/faster_rcnn_adamw.py
    python tools/print_param_groups.py CONFIG --cfg-options optim_wrapper.paramwise_cfg.norm_decay_mult=0
    python tools/print_param_groups.py CONFIG --auto-scale-lr --world-size 8

With ``paramwise_cfg.layer_decay`` a table of each depth's lr scale follows;
with ``auto_scale_lr`` enabled (or ``--auto-scale-lr``) the lrs shown are the
scaled ones, from the function the Runner scales with.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from visdet.engine.optim.errors import OptimizerConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file path")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config keys, e.g. optim_wrapper.optimizer.lr=1e-4",
    )
    parser.add_argument("--auto-scale-lr", action="store_true", help="as tools/train.py's: scale the lr by the batch")
    parser.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")),
                        help="processes the run will have, for auto_scale_lr (default: $WORLD_SIZE or 1)")
    return parser.parse_args(argv)


def scale_for_batch(cfg: Any, plan: Any, world_size: int) -> str | None:
    """Apply auto_scale_lr's factor to the plan's lrs (the Runner's function); the reason, or None when off."""
    from visdet.engine.lr_scaling import lr_scaling

    loader = cfg.get("train_dataloader") or {}
    scaling = lr_scaling(cfg.get("auto_scale_lr"), world_size, loader.get("batch_size", 1),
                         cfg.optim_wrapper.get("accumulative_counts", 1), cfg.optim_wrapper.optimizer.get("type"))
    if scaling is None:
        return None
    for setting in plan.param_plan.settings:
        setting.lr = setting.lr * scaling.factor
    return f"auto_scale_lr: {scaling.reason}"


def layer_decay_table(plan: Any) -> list[str]:
    """Each depth's lr scale under layer_decay: layer id, scale, tensors, first and last parameter."""
    from visdet.utils.tables import text_table

    by_layer: dict[int, list[Any]] = {}
    for setting in plan.param_plan.settings:
        if setting.layer_id is not None:
            by_layer.setdefault(setting.layer_id, []).append(setting)
    if not by_layer:
        return []
    rows = [[str(layer), f"{group[0].layer_scale:.4g}", str(len(group)), group[0].name, group[-1].name]
            for layer, group in sorted(by_layer.items())]
    return ["", "Layer-wise lr decay (lr x scale):"] + text_table(
        ["layer", "scale", "tensors", "first", "last"], rows)


def plan_of(model: Any, optim_wrapper: dict[str, Any]) -> Any:
    """The plan of the config's constructor when it is a visdet subclass (LearningRateDecayOptimizerConstructor...).

    ``report.plan_for`` plans with the default constructor, which would refuse
    a subclass's own keys (MMDetection's ``decay_rate``); the subclass's
    ``__init__`` reads them, and its ``plan`` is what it builds.
    """
    from visdet.engine.optim.build.constructor import OptimWrapperConstructor
    from visdet.engine.optim.build.report import plan_for
    from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

    constructor = optim_wrapper.get("constructor")
    cls = OPTIM_WRAPPER_CONSTRUCTORS.get(constructor) if isinstance(constructor, str) else constructor
    if isinstance(cls, type) and issubclass(cls, OptimWrapperConstructor) and cls is not OptimWrapperConstructor:
        cfg = {k: v for k, v in optim_wrapper.items() if k not in ("constructor", "paramwise_cfg")}
        return cls(cfg, optim_wrapper.get("paramwise_cfg")).plan(model)
    return plan_for(model, optim_wrapper)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if args.auto_scale_lr:
        from visdet.engine.launch import enable_auto_scale_lr
        from visdet.errors import ConfigError

        try:
            enable_auto_scale_lr(cfg)
        except ConfigError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
    init_default_scope(cfg.get("default_scope", "visdet"))
    from visdet.engine.optim.build.report import format_plan
    from visdet.registry import MODELS

    if "model" not in cfg or "optim_wrapper" not in cfg:
        print(f"{args.config}: needs both 'model' and 'optim_wrapper'", file=sys.stderr)
        return 2
    model = MODELS.build(cfg.model)
    try:
        plan = plan_of(model, cfg.optim_wrapper.to_dict())
    except OptimizerConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    scaled = scale_for_batch(cfg, plan, args.world_size)
    print(format_plan(plan))
    print("\n".join(layer_decay_table(plan)))
    if scaled:
        print(scaled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
