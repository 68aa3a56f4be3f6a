"""Train a detector: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] ...``.

The flags are MMDetection's. Configuration mistakes are reported as one message
(exit status 2) before the Runner builds anything; see visdet.engine.preflight.
Exit statuses (visdet.engine.launch.run_reporting_errors): 0 finished, 1 data,
checkpoint or training failure, 2 configuration mistake, 130 interrupted (Ctrl-C);
``--debug`` adds the traceback to the one-line message.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from visdet.engine.launch import (DictAction, add_shared_arguments, add_vis_backends, build_runner,  # noqa: E402
                                  enable_amp, enable_auto_scale_lr, load_config, parse_tool_args, prepare_embedded_data,
                                  prepare_strategy, run_reporting_errors, set_launcher, set_resume,
                                  set_work_dir)
from visdet.engine.preflight import check_config  # noqa: E402
from visdet.engine.resume_check import fresh_optimizer_requested  # noqa: E402
from visdet.errors import ConfigError  # noqa: E402
from visdet.engine.checkpoint.weights_check import check_load_from  # noqa: E402


def check_work_dir(work_dir: str, key: str) -> None:
    """A work dir that exists as a file would fail deep in mmengine (FileExistsError); say so before building."""
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise ConfigError(f"'{work_dir}' is a file, not a folder; logs and checkpoints need a folder: pass "
                          "another --work-dir (or remove the file)", key)


def interrupted_note(work_dir: str | None) -> str:
    """What Ctrl-C leaves: checkpoint writes are atomic, so the last one saved is complete.

    That is the one ``last_checkpoint`` names; mmengine writes that pointer with a
    plain ``open()`` after the save, so when it is empty or absent the newest
    checkpoint file in the work dir is the last one saved.
    """
    pointer = Path(work_dir, "last_checkpoint") if work_dir else None
    last = pointer.read_text().strip() if pointer is not None and pointer.is_file() else ""
    if not (last and osp.exists(last)) and work_dir and osp.isdir(work_dir):
        saved = sorted((p for p in Path(work_dir).glob("*.pth") if not p.name.startswith("best_")),  # no optimizer
                       key=lambda p: p.stat().st_mtime)
        last = str(saved[-1]) if saved else ""
    if last:
        return (f"the last checkpoint saved, {last}, is complete (checkpoints are written atomically); "
                f"continue with --resume {last}")
    return "no checkpoint was saved yet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a visdet detector")
    parser.add_argument("config", help="config file, e.g. configs/faster_rcnn_adamw.py")
    parser.add_argument("--work-dir", help="where logs, checkpoints and curves.png go "
                                           "(default: ./work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CKPT, or without a value from the work dir's latest checkpoint")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (bf16 on CPU; fp16 with dynamic loss scaling on CUDA)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the lr by the real batch (processes x batch_size x accumulative_counts) over "
                             "auto_scale_lr.base_batch_size")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. optim_wrapper.optimizer.lr=1e-4")
    add_shared_arguments(parser)
    return parse_tool_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state: dict[str, str] = {}  # what the Ctrl-C message needs from inside train()

    def train() -> None:
        cfg = load_config(args.config, args.cfg_options)
        set_work_dir(cfg, args.work_dir, args.config)
        check_work_dir(cfg.work_dir, "--work-dir" if args.work_dir is not None else "work_dir")
        state["work_dir"] = cfg.work_dir
        set_launcher(cfg, args.launcher)
        if args.amp:
            enable_amp(cfg)
        if args.auto_scale_lr:
            enable_auto_scale_lr(cfg)
        set_resume(cfg, args.resume)
        fresh_optimizer_requested(cfg)  # resume_optimizer must be a bool: say so before building
        add_vis_backends(cfg)
        prepare_strategy(cfg)  # strategy mistakes first (ZeRO stage, offload), then the rest of the config
        check_config(cfg)
        prepare_embedded_data(cfg)
        runner = build_runner(cfg, allow_unsafe_checkpoint=args.allow_unsafe_checkpoint)
        check_load_from(runner)  # mmengine would only log a load_from that shares nothing with the model
        runner.train()

    return run_reporting_errors(train, debug=args.debug,
                                on_interrupt=lambda: interrupted_note(state.get("work_dir")))


if __name__ == "__main__":
    sys.exit(main())
