"""Train one config once per optimizer and compare them: ``python tools/compare_optimizers.py CONFIG --optimizers ...``.

Examples:
    python tools/compare_optimizers.py configs/faster_rcnn_r18_small.py --optimizers AdamW,SGD,Lion --iters 200
    python tools/compare_optimizers.py configs/faster_rcnn_adamw.py --optimizers AdamW,SGD --hparams my_lrs.py

Each run is tools/train.py in <work-dir>/runs/<optimizer>; the table (comparison.md/.csv/.json) and the
plots (loss_vs_iter.png, map_vs_iter.png, map_vs_time.png) go in <work-dir>. Run the same command again
to continue a stopped comparison: finished runs are skipped, an interrupted one resumes from its checkpoint.
Exit statuses: 0 done, 2 a mistake in the arguments or the config (before any training), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from visdet.engine.launch import DictAction, run_reporting_errors  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the config every optimizer trains, e.g. configs/faster_rcnn_r18_small.py")
    parser.add_argument("--optimizers", required=True,
                        help="comma-separated names or aliases, e.g. AdamW,SGD,Lion (tools/list_optimizers.py)")
    parser.add_argument("--iters", type=int, help="train each for N iterations (the schedule keeps its shape)")
    parser.add_argument("--val-interval", type=int,
                        help="validate and checkpoint every V iterations (with --iters; default N/4)")
    parser.add_argument("--work-dir", help="where the runs, table and plots go "
                                           "(default: work_dirs/compare_<config name>)")
    parser.add_argument("--hparams", help="a Python file: hparams = dict(SGD=dict(lr=0.02, momentum=0.9), ...)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys for every run, e.g. train_dataloader.batch_size=4")
    parser.add_argument("--debug", action="store_true", help="print the traceback after an error message")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        from visdet.choosing.compare.comparison import compare

        result = compare(args.config, args.optimizers, args.work_dir, args.iters, args.val_interval, args.hparams,
                         args.cfg_options)
        print(f"\nComparison in {result.out_dir}:\n")
        print(result.markdown())

    return run_reporting_errors(work, debug=args.debug, on_interrupt=lambda: (
        "run the same command again to continue: finished runs are skipped, the interrupted one resumes"))


if __name__ == "__main__":
    sys.exit(main())
