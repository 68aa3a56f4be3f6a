#!/usr/bin/env python
"""Dry run of the optimizer a config builds: each parameter's group, lr, weight decay and route.

Builds the model (no weights are loaded, no data is read) and the plan the
optimizer constructor would follow, then prints it. Config mistakes are
reported the way training would report them, before any training work.

Examples:
    python tools/print_param_groups.py configs/faster_rcnn_adamw.py
    python tools/print_param_groups.py CONFIG --cfg-options optim_wrapper.paramwise_cfg.norm_decay_mult=0
"""
from __future__ import annotations

import argparse
import sys

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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get("default_scope", "visdet"))
    from visdet.engine.optim.build.report import format_plan, plan_for
    from visdet.registry import MODELS

    if "model" not in cfg or "optim_wrapper" not in cfg:
        print(f"{args.config}: needs both 'model' and 'optim_wrapper'", file=sys.stderr)
        return 2
    model = MODELS.build(cfg.model)
    try:
        plan = plan_for(model, cfg.optim_wrapper.to_dict())
    except OptimizerConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
