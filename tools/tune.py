"""Tune a config's optimizer with Optuna: ``python tools/tune.py CONFIG --space SPACE.py [--trials N] ...``.

Each trial trains CONFIG with a sample of the search space (a visdet-style
config file, see docs/choosing_an_optimizer.md) for ``--iters`` iterations,
reporting its validation mAP at every validation so the pruner can stop weak
trials. The study is kept in ``--storage`` (default: ``<work dir>/study.db``,
SQLite): the same command run again continues it, and the same command on
several machines with one ``--storage postgresql://...`` shares it. At the
end: ``best_config.py`` (the best trial as a runnable config) and Optuna's
plots as PNG in the work dir. Config, space and storage are checked before any
training; a mistake is one message and exit status 2.
"""
from __future__ import annotations

import argparse
import copy
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from visdet.engine.launch import DictAction, load_config, run_reporting_errors  # noqa: E402

DEFAULT_TRIALS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Tune a config's optimizer (and more) with an Optuna study")
    parser.add_argument("config", help="config file, e.g. configs/faster_rcnn_r18_small.py")
    parser.add_argument("--space", required=True, help="search-space file, e.g. space = dict(optimizer=dict("
                                                       "type=choice('AdamW', 'SGD'), lr=loguniform(1e-5, 1e-2)))")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"finished trials (complete or pruned) the study should hold in all, counting earlier "
                             f"runs and other workers (default {DEFAULT_TRIALS})")
    parser.add_argument("--storage", help="SQLAlchemy URL of the study's database, e.g. "
                                          "postgresql://user:password@host:5432/db for several machines "
                                          "(default: sqlite:///<work dir>/study.db)")
    parser.add_argument("--study", help="study name (default: the config's file name)")
    parser.add_argument("--iters", type=int, help="training iterations per trial (default: the config's schedule)")
    parser.add_argument("--val-interval", type=int,
                        help="validate (and report to the pruner) every V iterations (default: --iters / 4)")
    parser.add_argument("--pruner", default="median", help="median (default), hyperband, sha "
                                                           "(successive halving) or none")
    parser.add_argument("--seed", type=int, default=0,
                        help="trial n samples with (seed, n), and every trial trains with this seed unless the "
                             "config sets randomness.seed (default 0)")
    parser.add_argument("--work-dir", help="study folder: trials/trial_<n>/, study.db, best_config.py, plots "
                                           "(default: ./work_dirs/tune_<config name>)")
    parser.add_argument("--metric", default="coco/bbox_mAP", help="the validation metric to maximize "
                                                                  "(default coco/bbox_mAP)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys for every trial, e.g. train_dataloader.batch_size=4")
    parser.add_argument("--debug", action="store_true", help="print the traceback after the one-line error message")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def tune() -> None:
        from visdet.choosing.tuning.trial_run import import_optuna

        import_optuna()  # Optuna is the optional 'tune' extra: without it, one message saying how to install it
        from visdet.choosing.budget import DEFAULT_VALIDATIONS, set_iteration_budget
        from visdet.choosing.tuning import outputs, study as studies
        from visdet.choosing.tuning.space import check_space, load_space
        from visdet.choosing.tuning.storage import default_url, open_storage
        from visdet.errors import ConfigError

        name = osp.splitext(osp.basename(args.config))[0]
        work_dir = args.work_dir or osp.join("./work_dirs", f"tune_{name}")
        if osp.exists(work_dir) and not osp.isdir(work_dir):
            raise ConfigError(f"'{work_dir}' is a file, not a folder; pass another --work-dir", "--work-dir")
        if args.trials < 1:
            raise ConfigError(f"must be at least 1, got {args.trials}", "--trials")
        studies.make_pruner(args.pruner)  # an unknown name before anything else is opened
        cfg = load_config(args.config, args.cfg_options)
        studies.seed_trials(cfg, args.seed)
        if args.iters is not None or args.val_interval is not None:
            if args.iters is None:
                raise ConfigError("needs --iters (the trial budget it divides)", "--val-interval")
            set_iteration_budget(copy.deepcopy(cfg), args.iters, args.val_interval, per_epoch=1)  # flags' checks
        space = load_space(args.space)
        for warning in check_space(cfg, space):
            print(f"visdet: space: {warning}", file=sys.stderr)
        storage = open_storage(args.storage, work_dir)
        first_validation = (args.val_interval or max(1, args.iters // DEFAULT_VALIDATIONS)) if args.iters else None
        study = studies.open_study(storage, args.study or name, seed=args.seed, pruner=args.pruner,
                                   min_resource=first_validation)
        result = studies.optimize(study, cfg, space, work_dir, args.trials, iters=args.iters,
                                  val_interval=args.val_interval, metric=args.metric)
        print(studies.summary(result))
        best = outputs.write_best_config(study, cfg, space, work_dir)
        print(f"best config: {best}" if best else "best config: not written, no trial is complete")
        for filename, where in outputs.write_plots(study, work_dir).items():
            print(f"{filename}: {where}")
        if args.storage is None:
            print(f"dashboard (pip install optuna-dashboard): optuna-dashboard {default_url(work_dir)}")

    return run_reporting_errors(tune, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
