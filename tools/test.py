"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options ...]``.

Runs the config's test dataloader and test evaluator (bbox mAP on the embedded
or COCO val split) and prints the metrics. Flags are MMDetection's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from visdet.engine.launch import (DictAction, add_shared_arguments, build_runner,  # noqa: E402
                                  check_checkpoint_path, load_config, parse_tool_args, prepare_embedded_data,
                                  run_reporting_errors, set_launcher, set_strategy_aside, set_work_dir)
from visdet.engine.preflight import check_config  # noqa: E402
from visdet.engine.checkpoint.weights_check import check_evaluation_weights  # noqa: E402
from visdet.engine.hooks.ema_checks import select_test_weights  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a visdet checkpoint")
    parser.add_argument("config", help="config file the checkpoint was trained with")
    parser.add_argument("checkpoint", help="checkpoint file (.pth), or the epoch_N.pth/ folder a DeepSpeed run wrote")
    parser.add_argument("--work-dir", help="where the evaluation log goes (default: ./work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. test_dataloader.batch_size=2")
    parser.add_argument("--allow-partial-load", action="store_true",
                        help="evaluate a checkpoint whose weights fit the model only in part (missing, extra or "
                             "differently shaped keys; the rest keeps random initial values): without it, that is "
                             "an error")
    parser.add_argument("--raw-weights", action="store_true",
                        help="a checkpoint saved with an EMAHook: evaluate its raw training weights (its "
                             "ema_state_dict) instead of the EMA weights its state_dict holds")
    add_shared_arguments(parser)
    return parse_tool_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def test() -> None:
        cfg = load_config(args.config, args.cfg_options)
        check_checkpoint_path(cfg, args.checkpoint, "CHECKPOINT", resuming=False)
        set_work_dir(cfg, args.work_dir, args.config)
        set_launcher(cfg, args.launcher)
        cfg.load_from = args.checkpoint
        cfg.resume = False
        set_strategy_aside(cfg)
        select_test_weights(cfg, raw=args.raw_weights)  # EMAHook: the EMA weights unless --raw-weights
        check_config(cfg, training=False)
        prepare_embedded_data(cfg)
        runner = build_runner(cfg, allow_unsafe_checkpoint=args.allow_unsafe_checkpoint)
        # mmengine loads with strict=False and only logs what does not fit: check before it scores random weights.
        check_evaluation_weights(runner, args.checkpoint, allow_partial=args.allow_partial_load)
        for name, value in (runner.test() or {}).items():
            print(f"{name}: {value}")

    return run_reporting_errors(test, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
