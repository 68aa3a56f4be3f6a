"""Find a learning rate: ``python tools/lr_find.py CONFIG [--start 1e-7] [--end 1] [--iters 100] ...``.

The learning-rate range test (Smith, 2017; fastai's ``lr_find``, Lightning's
``Tuner.lr_find``) inside visdet's own Runner: the lr rises exponentially
from --start to --end, one training iteration each, until the smoothed loss
diverges; then the weights and optimizer state are put back. Writes
``lr_find.png`` and ``lr_find.json`` to the work dir and prints the suggested
lr with the ``--cfg-options`` that trains with it. The work is
``visdet.choosing.lr_finder``; exit statuses are tools/train.py's (2: a
configuration mistake, reported before anything is built).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from visdet.engine.launch import DictAction, load_config, run_reporting_errors  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Learning-rate range test: which lr to train a config with")
    parser.add_argument("config", help="config file, e.g. configs/faster_rcnn_adamw.py")
    parser.add_argument("--start", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    parser.add_argument("--end", type=float, default=1.0, help="last lr of the sweep (default 1)")
    parser.add_argument("--iters", type=int, default=100, help="iterations of the full sweep (default 100; it "
                                                                "stops earlier when the loss diverges)")
    parser.add_argument("--smooth", type=float, default=0.98, help="moving-average factor of the loss (0.98)")
    parser.add_argument("--diverge", type=float, default=4.0,
                        help="stop once the smoothed loss exceeds this times its minimum (4)")
    parser.add_argument("--work-dir", help="where lr_find.png and lr_find.json go "
                                           "(default: ./work_dirs/lr_find_<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. optim_wrapper.optimizer.type=SGD")
    parser.add_argument("--debug", action="store_true", help="print the traceback after an error message")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def find() -> None:
        from visdet.choosing.lr_finder.range_test import RangeTestSettings, run_range_test

        settings = RangeTestSettings(start=args.start, end=args.end, iters=args.iters, smooth=args.smooth,
                                     diverge=args.diverge)
        settings.check()  # flag mistakes before the config is even read
        cfg = load_config(args.config, args.cfg_options)
        work_dir = args.work_dir or osp.join("./work_dirs", f"lr_find_{osp.splitext(osp.basename(args.config))[0]}")
        result = run_range_test(cfg, settings, work_dir, config_path=args.config)
        print(f"lr range test: {result.iterations} iterations ({result.stop_reason}), weights and optimizer "
              f"state restored in {result.restore_seconds:.2f} s")
        for name, value in (("steepest descent", result.steepest), ("minimum loss / 10", result.minimum)):
            print(f"  {name}: {'none (the loss never fell)' if value is None else f'{value:.3g}'}")
        if result.lowest_at_start:
            print(f"  note: the loss was lowest at the first lrs, so minimum / 10 is --start; a lower --start "
                  f"(below {args.start:g}) shows where it begins to fall")
        if result.cfg_option() is not None:
            print(f"train with: {result.cfg_option()}")
        print(f"plot: {result.png_path}\nrecord: {result.json_path}")

    return run_reporting_errors(find, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
