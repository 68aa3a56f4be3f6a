"""From command-line arguments to a ready mmengine Runner: what ``tools/train.py`` and ``tools/test.py`` share.

The tools stay thin (argument parsing); this module applies the flags MMDetection
users know (``--work-dir``, ``--amp``, ``--resume``, ``--cfg-options``,
``--launcher``) to the config, generates the embedded data set when the config
uses it, and runs :func:`visdet.engine.preflight.check_config` before the
Runner builds anything.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config, ConfigDict, DictAction  # noqa: F401  DictAction re-exported for the tools
from mmengine.logging import print_log

from visdet.errors import ConfigError

AMP_WRAPPER = "AmpOptimWrapper"


#: Exit statuses of tools/train.py and tools/test.py (see :func:`run_reporting_errors`).
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Checkpoint schemes mmengine downloads from (``CheckpointLoader``); visdet loads them only from the torch hub cache.
REMOTE_SCHEMES = ("http://", "https://", "torchvision://", "modelzoo://", "open-mmlab://", "openmmlab://", "mmcls://")


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags tools/train.py and tools/test.py both take (their help texts differ only in examples)."""
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' when started by torchrun for multi-process work")
    parser.add_argument("--allow-unsafe-checkpoint", action="store_true",
                        help="load checkpoints that need arbitrary Python objects (weights_only=False): they can "
                             "run code, so only for files you trust")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback after the one-line error message (for bug reports)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)


def parse_tool_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, and export LOCAL_RANK for launchers that pass it as a flag (torch.distributed.launch)."""
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def run_reporting_errors(action: Callable[[], None], debug: bool = False,
                         on_interrupt: Callable[[], str] | None = None) -> int:
    """Run a tool's work; user mistakes and expected failures become one line on stderr and an exit status.

    Exit statuses:

    * 0: the work finished.
    * 1: data, checkpoint or training failure: an image or checkpoint file that
      cannot be used (named in the message), or training stopped by the
      non-finite guard (``NonFiniteTrainingError``, which says which checkpoints
      hold usable parameters).
    * 2: a configuration mistake (``ConfigError``), including a remote
      checkpoint: visdet downloads nothing (see :func:`refuse_downloads`).
    * 130: interrupted (Ctrl-C / SIGINT). Checkpoint writes are atomic
      (:mod:`visdet.engine.checkpoint.atomic`), so every checkpoint on disk is
      complete; ``on_interrupt`` adds which one to resume from.

    Anything else is a bug and propagates with its traceback. With ``debug``
    (``--debug``) the traceback is printed after the line too.
    """
    from visdet.datasets.transforms.loading import ImageLoadError
    from visdet.engine.optim.wrappers.nonfinite import NonFiniteTrainingError
    from visdet.errors import CheckpointError

    refuse_downloads()
    try:
        action()
        return EXIT_OK
    except (KeyboardInterrupt, Exception) as caught:
        error: BaseException = caught
    if isinstance(error, ConfigError):
        line, status = f"visdet: configuration error: {error}", EXIT_CONFIG
    elif isinstance(error, CheckpointError):
        line, status = f"visdet: checkpoint error: {error}", EXIT_FAILURE
    elif isinstance(error, ImageLoadError):
        line, status = f"visdet: data error: {error}", EXIT_FAILURE
    elif isinstance(error, NonFiniteTrainingError):
        line, status = f"visdet: training error: {error}", EXIT_FAILURE
    elif _interrupted(error):
        note = on_interrupt() if on_interrupt is not None else ""
        line, status = f"visdet: interrupted (Ctrl-C){'; ' + note if note else ''}", EXIT_INTERRUPTED
    else:
        raise error
    print(line, file=sys.stderr)
    if debug:
        traceback.print_exception(error)
    return status


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` is Ctrl-C or was raised while handling it.

    mmengine's ``Config.pretty_text`` (run at every checkpoint save) wraps its
    formatter in a bare ``except`` and raises ``SyntaxError`` instead, so a
    Ctrl-C during a save arrives as that error with the interrupt as its context.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _hub_cache_file(url: str) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` keeps ``url`` once downloaded."""
    from urllib.parse import urlparse

    return osp.join(torch.hub.get_dir(), "checkpoints", osp.basename(urlparse(url).path))


def _remote_url(filename: str) -> str | None:
    """The URL mmengine would download ``filename`` from (None: a scheme whose table has no URL for it)."""
    from mmengine.runner import checkpoint as mm_checkpoint

    if filename.startswith(("http://", "https://")):
        return filename
    scheme, name = filename.split("://", 1)
    tables = {"torchvision": mm_checkpoint.get_torchvision_models, "modelzoo": mm_checkpoint.get_torchvision_models,
              "open-mmlab": mm_checkpoint.get_external_models, "openmmlab": mm_checkpoint.get_external_models,
              "mmcls": mm_checkpoint.get_mmcls_models}
    url = tables[scheme]().get(name)
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def refuse_downloads() -> None:
    """Make mmengine's remote checkpoint schemes read only the torch hub cache (idempotent).

    mmengine 0.10 downloads ``torchvision://``, ``open-mmlab://``, ``http(s)://``
    (and similar) checkpoints with ``torch.hub.load_state_dict_from_url``, e.g.
    for an mmdet-style ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')``;
    without network that ends in a ``URLError`` traceback after the model is
    built. visdet downloads nothing: a file already in the torch hub cache
    (``torch.hub.get_dir()/checkpoints``, where a download would have put it) is
    read with visdet's safe loader, anything else is a :class:`ConfigError`
    saying how to pass a local file.
    """
    from visdet.utils.quiet_import import quiet_import

    quiet_import("mmengine.runner")  # it imports DeepSpeed, which prints a warning at import
    from mmengine.runner.checkpoint import CheckpointLoader

    if getattr(CheckpointLoader._schemes.get("torchvision://"), "visdet_no_download", False):
        return

    def load_cached(filename: str, map_location: Any = None) -> Any:
        from visdet.engine.checkpoint.loading import load_checkpoint_file

        try:
            url = _remote_url(filename)
        except KeyError:  # not in the scheme's table: mmengine would raise a bare KeyError
            raise ConfigError(f"checkpoint '{filename}' names no model mmengine knows for that scheme", None) from None
        cached = _hub_cache_file(url) if url else None
        if cached is None or not osp.isfile(cached):
            where = f" ({url})" if url and url != filename else ""
            cache = osp.dirname(cached) if cached else osp.join(torch.hub.get_dir(), "checkpoints")
            raise ConfigError(
                f"checkpoint '{filename}'{where} is remote and visdet downloads nothing (it is not in the torch "
                f"hub cache {cache} either). Download the file yourself and give its local path instead, e.g. "
                "model.backbone.init_cfg=dict(type='Pretrained', checkpoint='/path/to/file.pth') or "
                "load_from='/path/to/file.pth'; or put it in that cache folder", None)
        checkpoint = load_checkpoint_file(cached, map_location)
        if filename.startswith("mmcls://"):
            from mmengine.runner.checkpoint import _process_mmcls_checkpoint

            checkpoint = _process_mmcls_checkpoint(checkpoint)
        return checkpoint

    load_cached.visdet_no_download = True  # type: ignore[attr-defined]
    CheckpointLoader.register_scheme(prefixes=list(REMOTE_SCHEMES), loader=load_cached, force=True)


def load_config(path: str, cfg_options: Mapping[str, Any] | None = None) -> Config:
    """Read a config file and apply ``--cfg-options``; a missing file is a ConfigError, not a traceback."""
    if not osp.isfile(path):
        configs = sorted(str(p) for p in Path("configs").glob("*.py")) if Path("configs").is_dir() else []
        hint = f"; configs here: {', '.join(configs)}" if configs else ""
        raise ConfigError(f"config file '{path}' does not exist{hint}", "CONFIG")
    try:
        cfg = Config.fromfile(path)
        if cfg_options:
            cfg.merge_from_dict(dict(cfg_options))
    except TypeError as error:  # mmengine's merge: a dict over a non-dict base value (init_cfg=None in visdet's)
        if "cannot inherit from base" not in str(error):
            raise
        raise ConfigError(str(error), None) from None
    from visdet.engine.mmdet_compat import translate_mmdet_scope

    translate_mmdet_scope(cfg)  # default_scope='mmdet' read as visdet's unless MMDetection is installed
    return cfg


def set_work_dir(cfg: Config, work_dir: str | None, config_path: str) -> None:
    """``--work-dir`` wins, then the config's ``work_dir``, then ``./work_dirs/<config name>`` (mmdet's rule)."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(config_path))[0])


def enable_auto_scale_lr(cfg: Config) -> None:
    """``--auto-scale-lr`` (MMDetection's flag): turn on ``auto_scale_lr``, which must name its base batch."""
    section = cfg.get("auto_scale_lr")
    if not isinstance(section, Mapping) or "base_batch_size" not in section:
        raise ConfigError("--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in the config (N: the total "
                          "batch size its lr was tuned for, e.g. 16 for MMDetection's 8 GPUs x 2 images)",
                          "auto_scale_lr.base_batch_size")
    cfg.auto_scale_lr = {**section, "enable": True}


def enable_amp(cfg: Config) -> None:
    """``--amp``: mixed precision through visdet's AmpOptimWrapper (bf16 on CPU, fp16 with loss scaling on CUDA)."""
    optim_wrapper = cfg.optim_wrapper
    kind = optim_wrapper.get("type", "OptimWrapper")
    if kind == AMP_WRAPPER:
        print_log("--amp: the config already uses AmpOptimWrapper", logger="current", level=logging.INFO)
        return
    if kind != "OptimWrapper":
        raise ConfigError(f"--amp works with type='OptimWrapper'; this config uses '{kind}', which manages "
                          "precision itself", "optim_wrapper.type")
    optim_wrapper.type = AMP_WRAPPER
    if torch.cuda.is_available():
        optim_wrapper.setdefault("loss_scale", "dynamic")


def set_resume(cfg: Config, resume: str | None) -> None:
    """``--resume`` alone resumes from the work dir's latest checkpoint; ``--resume CKPT`` from that file."""
    if resume is None:
        return
    cfg.resume = True
    if resume == "auto":
        cfg.load_from = None
    else:
        check_checkpoint_path(cfg, resume, "--resume", resuming=True)
        cfg.load_from = resume


def check_checkpoint_path(cfg: Config, path: str, key: str, resuming: bool) -> None:
    """Refuse a checkpoint path that does not exist or that this config cannot read, before anything is built.

    A file is any run's checkpoint; a folder is DeepSpeed's (``epoch_N.pth/``).
    Resuming needs the matching kind, because DeepSpeed keeps the optimizer state
    in its own per-process files; loading weights (``tools/test.py``,
    ``load_from``) takes either.
    """
    from visdet.engine.checkpoint.deepspeed_folder import (MODEL_STATES, is_deepspeed_folder, is_zero3_folder,
                                                           zero3_message)
    from visdet.engine.strategies.checks import strategy_type
    from visdet.engine.strategies.names import DEEPSPEED

    if osp.isdir(path):
        if not is_deepspeed_folder(path):
            raise ConfigError(f"checkpoint '{path}' is a folder without {MODEL_STATES}, so not a DeepSpeed "
                              "checkpoint; pass a .pth file", key)
        if not resuming and is_zero3_folder(path):
            raise ConfigError(zero3_message(path), key)
        if resuming and strategy_type(cfg) != DEEPSPEED:
            raise ConfigError(f"checkpoint '{path}' is a DeepSpeed checkpoint folder: only a config with "
                              f"strategy=dict(type='{DEEPSPEED}', ...) resumes from it (its optimizer state is "
                              f"DeepSpeed's). To start a new run from its weights, drop --resume and set "
                              f"load_from='{path}'", key)
    elif not osp.isfile(path):
        raise ConfigError(f"checkpoint '{path}' does not exist", key)
    elif resuming and strategy_type(cfg) == DEEPSPEED:
        raise ConfigError(f"checkpoint '{path}' is a single file, but {DEEPSPEED} resumes from the folder "
                          "DeepSpeed wrote (work_dir/epoch_N.pth/, which holds the optimizer state)", key)


def set_launcher(cfg: Config, launcher: str) -> None:
    """Record the launcher; without CUDA, distributed runs use gloo (nccl needs GPUs)."""
    cfg.launcher = launcher
    if launcher != "none" and not torch.cuda.is_available():
        cfg.setdefault("env_cfg", ConfigDict()).setdefault("dist_cfg", ConfigDict())["backend"] = "gloo"
        # The Runner's default DDP wrapper passes device_ids=[LOCAL_RANK], which DDP refuses for CPU modules.
        wrapper = cfg.get("model_wrapper_cfg") or ConfigDict(
            type="MMDistributedDataParallel", broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False))
        wrapper.setdefault("device_ids", None)
        cfg.model_wrapper_cfg = wrapper


def init_cpu_process_group(cfg: Config) -> None:
    """Join the torchrun process group with gloo when there is no GPU.

    mmengine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally,
    which fails on a CPU-only machine; the Runner skips ``init_dist`` when a
    process group already exists, so visdet makes it first.
    """
    import torch.distributed as dist

    if cfg.get("launcher", "none") == "none" or torch.cuda.is_available() or dist.is_initialized():
        return
    backend = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "gloo")
    dist.init_process_group(backend=backend)


def add_vis_backends(cfg: Config) -> None:
    """Scalars to json always (LocalVisBackend); to TensorBoard too when it is installed."""
    visualizer = cfg.setdefault("visualizer", ConfigDict(type="Visualizer", name="visualizer"))
    backends = list(visualizer.get("vis_backends") or [dict(type="LocalVisBackend")])
    if importlib.util.find_spec("tensorboard") is not None and not any(
            b.get("type") == "TensorboardVisBackend" for b in backends):
        backends.append(dict(type="TensorboardVisBackend"))
    visualizer.vis_backends = backends


def prepare_embedded_data(cfg: Config, wait_s: float = 600.0) -> None:
    """Generate the embedded data set when the config uses it and it is absent or outdated.

    Under torchrun only local rank 0 generates; the other processes wait for it
    (they start before any process group exists, so a file check is the barrier).
    """
    spec_cfg = cfg.get("embedded_data")
    if not spec_cfg:
        return
    from visdet.datasets.embedded import EmbeddedDataSpec, ensure

    try:
        spec = EmbeddedDataSpec.from_cfg(dict(spec_cfg))
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error), None) from error
    root = spec_cfg.get("root")
    if not root:
        raise ConfigError("needs 'root', the folder to generate the data set in", "embedded_data.root")
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        from visdet.datasets.embedded import is_current

        deadline = time.monotonic() + wait_s
        while not is_current(root, spec):
            if time.monotonic() > deadline:
                raise ConfigError(f"waited {wait_s:.0f} s for local rank 0 to generate the embedded data set "
                                  f"under {root}", "embedded_data.root")
            time.sleep(0.5)
        return
    if ensure(root, spec):
        print_log(f"Generated the embedded data set under {root} ({spec.num_train} train, {spec.num_val} val "
                  f"images)", logger="current", level=logging.INFO)


def build_runner(cfg: Config, allow_unsafe_checkpoint: bool = False):
    """visdet's Runner (or ``runner_type``) from a config that passed the pre-flight checks.

    Installs visdet's checkpoint I/O first: atomic writes, and ``weights_only=True``
    loading unless ``allow_unsafe_checkpoint`` (``--allow-unsafe-checkpoint``).
    visdet's Runner is mmengine's plus sharded-optimizer-state gathering on save
    (see :mod:`visdet.engine.runner`).
    """
    from visdet.engine.runner import Runner

    from visdet.engine.checkpoint.install import install

    install(allow_unsafe=allow_unsafe_checkpoint)
    init_cpu_process_group(cfg)

    from visdet.registry import RUNNERS

    if "runner_type" in cfg:
        prepare_strategy(cfg)
        scope = cfg.get("default_scope")
        if scope is not None:
            # FlexibleRunner builds its strategy before it sets its own default scope: without this,
            # 'DeepSpeedStrategy' would resolve to mmengine's class instead of visdet's fixed one.
            from mmengine.registry import DefaultScope

            DefaultScope.get_instance(f"visdet-build-{time.time_ns()}", scope_name=scope)
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def set_strategy_aside(cfg: Config) -> None:
    """Evaluate a FlexibleRunner config (DeepSpeed, FSDP) with visdet's plain Runner.

    The strategies shard training state; evaluating a detector needs only its
    weights, which a DeepSpeed folder or an FSDP full checkpoint gives as an
    ordinary state dict. So ``tools/test.py`` runs on one process (or DDP with
    ``--launcher pytorch``) on any machine, without starting a DeepSpeed engine.
    """
    from visdet.engine.strategies import uses_flexible_runner
    from visdet.engine.strategies.checks import strategy_type

    if cfg.get("strategy") is None and not uses_flexible_runner(cfg):
        return
    name = strategy_type(cfg) or "strategy"
    cfg.pop("runner_type", None)
    cfg.pop("strategy", None)
    print_log(f"Evaluating with visdet's Runner: the config's {name} is for training and is not used here",
              logger="current", level=logging.INFO)


def prepare_strategy(cfg: Config) -> None:
    """A FlexibleRunner ``strategy``: refuse impossible settings and register visdet's strategies.

    Runs before :func:`visdet.engine.preflight.check_config` in ``tools/train.py``,
    so a strategy mistake is the one reported; does nothing for a config without
    ``strategy``/``runner_type``.
    """
    from visdet.engine.strategies import check_strategy_config, register, uses_flexible_runner

    if cfg.get("strategy") is None and not uses_flexible_runner(cfg):
        return
    check_strategy_config(cfg)
    if uses_flexible_runner(cfg):
        register()
