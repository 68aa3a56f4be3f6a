"""visdet's Runner: mmengine's, with sharded optimizer state gathered before a checkpoint save.

mmengine 0.10's ``Runner.save_checkpoint`` runs on rank 0 only (``@master_only``)
and calls ``optim_wrapper.state_dict()`` there. A ZeroRedundancyOptimizer keeps
each rank's shard of the state on that rank: its ``state_dict()`` needs
``consolidate_state_dict()`` first, a collective every rank must join. Called
from rank 0 alone it raises "Optimizer state has not been consolidated" (torch's
class) or waits forever for the other ranks (mmengine's wrapper, which
consolidates inside ``state_dict()``). Here every rank consolidates onto rank 0,
then rank 0 saves as before. Loading needs nothing extra: every rank reads the
full state and ``ZeroRedundancyOptimizer.load_state_dict`` keeps its own shard.
"""
from __future__ import annotations

import os.path as osp
from typing import Any

from mmengine.runner import Runner as MMEngineRunner

from visdet.datasets.errors import dataset_config_section
from visdet.registry import RUNNERS


def consolidate_sharded_optimizer_state(optim_wrapper: Any) -> None:
    """Gather every ZeroRedundancyOptimizer's shards onto rank 0 (a collective: call on all ranks).

    One that ``ZeroConsolidateHook`` gathered since its last step is not gathered again.
    """
    from visdet.engine.optim.config.zero_redundancy import gather_zero_shards

    gather_zero_shards(optim_wrapper)


def latest_checkpoint(work_dir: str) -> str | None:
    """The checkpoint ``work_dir/last_checkpoint`` names (what mmengine's auto-resume picks); None without one.

    Raises:
        CheckpointError: the pointer file is empty (a run killed while writing it).
    """
    pointer = osp.join(work_dir, "last_checkpoint")
    if not osp.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as handle:
        path = handle.read().strip()
    if not path:
        from visdet.errors import CheckpointError

        raise CheckpointError(f"{pointer} is empty, so it names no checkpoint to resume from; pass one: "
                              f"--resume {osp.join(work_dir, 'epoch_N.pth')}")
    return path


def _has_built_schedulers(schedulers: Any) -> bool:
    """Whether any scheduler in mmengine's nested dict/list of them is built (not a config)."""
    from mmengine.optim.scheduler.param_scheduler import _ParamScheduler

    if isinstance(schedulers, dict):
        return "type" not in schedulers and any(_has_built_schedulers(s) for s in schedulers.values())
    if isinstance(schedulers, list):
        return any(_has_built_schedulers(s) for s in schedulers)
    return isinstance(schedulers, _ParamScheduler)


class AutoResume:
    """``resume=True`` without ``load_from`` (``--resume`` alone): say plainly what is resumed, or that nothing is.

    mmengine logs "Auto resumed from the latest checkpoint None." and starts a
    new run when the work dir has no checkpoint. Here that case is one warning
    and a new run; otherwise the latest checkpoint is resumed as if given by
    name (mmengine's own branch for ``load_from``). For Runner and FlexibleRunner.
    """

    def load_or_resume(self) -> None:
        if not self._has_loaded and self._resume is True and self._load_from is None:
            latest = latest_checkpoint(self.work_dir)
            if latest is None:
                self.logger.warning(f"--resume: no checkpoint in {self.work_dir}, starting a new run")
                self._resume = False
            else:
                self.logger.info(f"--resume: resuming from {latest}, the latest checkpoint in {self.work_dir}")
                self._load_from = latest
        return super().load_or_resume()


class DatasetSectionKeys:
    """A dataset's config errors name the dataloader they belong to; for Runner and FlexibleRunner.

    A dataset only knows its own keys ('dataset.filter_cfg.min_size'); the loop
    builds its dataloader, so the section is known here and prefixed
    ('train_dataloader.dataset.filter_cfg.min_size').
    """

    def build_train_loop(self, loop: Any) -> Any:
        with dataset_config_section("train_dataloader"):
            return super().build_train_loop(loop)

    def build_val_loop(self, loop: Any) -> Any:
        with dataset_config_section("val_dataloader"):
            return super().build_val_loop(loop)

    def build_test_loop(self, loop: Any) -> Any:
        with dataset_config_section("test_dataloader"):
            return super().build_test_loop(loop)


@RUNNERS.register_module(name="Runner", force=True)  # force: survives re-import
class Runner(AutoResume, DatasetSectionKeys, MMEngineRunner):
    """mmengine's ``Runner``; ``save_checkpoint`` also works with ZeroRedundancyOptimizer under DDP."""

    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, save_optimizer: bool = True,
                        **kwargs: Any) -> None:
        """Consolidate sharded optimizer state on every rank, then save on rank 0 (mmengine's method)."""
        if save_optimizer and self.optim_wrapper is not None:
            consolidate_sharded_optimizer_state(self.optim_wrapper)
        super().save_checkpoint(out_dir, filename, *args, save_optimizer=save_optimizer, **kwargs)

    def scale_lr(self, optim_wrapper: Any, auto_scale_lr: dict | None = None) -> None:
        """mmengine's ``auto_scale_lr``, counting ``accumulative_counts`` and with a ``rule`` (see ``lr_scaling``).

        mmengine scales by processes x batch_size only (mmengine#894) and logs
        the ratio; here the factor is :func:`visdet.engine.lr_scaling.lr_scaling`'s
        and the log says each group's lr before and after, and why. Written
        whole rather than through ``super()``: mmengine's computes its own ratio.
        """
        from visdet.engine.lr_scaling import lr_scaling

        if not auto_scale_lr or not auto_scale_lr.get("enable", False):
            return
        loader = self._train_dataloader
        batch_size = loader["batch_size"] if isinstance(loader, dict) else loader.batch_size
        wrappers = list(optim_wrapper.values()) if hasattr(optim_wrapper, "values") else [optim_wrapper]
        counts = getattr(wrappers[0], "_accumulative_counts", 1)
        optimizer_cfg = (self.cfg.get("optim_wrapper") or {}).get("optimizer") or {}
        scaling = lr_scaling(auto_scale_lr, self.world_size, batch_size, counts,
                             optimizer_cfg.get("type") or type(wrappers[0].optimizer).__name__)
        if _has_built_schedulers(self.param_schedulers):  # they have stored each group's initial lr already
            raise RuntimeError("scale_lr must run before the parameter schedulers are built")
        before = [group["lr"] for w in wrappers for group in w.optimizer.param_groups]
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                group["lr"] = group["lr"] * scaling.factor
        after = [group["lr"] for w in wrappers for group in w.optimizer.param_groups]
        pairs = sorted({(b, a) for b, a in zip(before, after)}, reverse=True)
        shown = ", ".join(f"{b:.4g} -> {a:.4g}" for b, a in pairs[:6]) + (", ..." if len(pairs) > 6 else "")
        self.logger.info(f"auto_scale_lr: {scaling.reason}; group lrs {shown}")

    def resume(self, filename: str, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location: Any = "default") -> None:
        """mmengine's resume; an optimizer state that does not fit the config's is a ConfigError before training.

        ``resume_optimizer=False`` in the config starts the optimizer fresh
        instead (see :mod:`visdet.engine.resume_check`).
        """
        from visdet.engine.resume_check import resume_checked

        resume_checked(self, super().resume, filename, resume_optimizer, resume_param_scheduler, map_location)
