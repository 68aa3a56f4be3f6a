"""visdet's ``FlexibleRunner``: mmengine 0.10.7's, with the checkpoint's epoch/iter kept as the caller gave them.

mmengine's ``FlexibleRunner.save_checkpoint`` overwrites ``meta['epoch']`` and
``meta['iter']`` with the runner's counters (its ``Runner`` only fills them in
when missing). ``CheckpointHook`` re-saves ``epoch_N.pth`` after validation
when a new best score appears, by which time the epoch counter has moved on:
the file then claims one epoch more than it holds and ``--resume`` skips an
epoch (seen with DeepSpeed: a 1-epoch checkpoint resumed as "epoch: 2").
"""
from __future__ import annotations

from typing import Any

from mmengine.fileio import join_path
from mmengine.runner import FlexibleRunner as MMEngineFlexibleRunner

from visdet.engine.runner import AutoResume, DatasetSectionKeys  # --resume with nothing says so; full dataset keys
from visdet.engine.strategies.names import FLEXIBLE_RUNNER
from visdet.registry import RUNNERS


@RUNNERS.register_module(name=FLEXIBLE_RUNNER, force=True)  # force: survives re-import
class FlexibleRunner(AutoResume, DatasetSectionKeys, MMEngineFlexibleRunner):
    """mmengine's FlexibleRunner whose checkpoints record the epoch and iteration they hold."""

    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: dict | None = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True, meta: dict | None = None,
                        by_epoch: bool = True, backend_args: dict | None = None) -> None:
        if file_client_args is not None:
            raise TypeError("file_client_args is deprecated in mmengine; pass backend_args")
        meta = dict(meta or {})
        if not isinstance(meta, dict):
            raise TypeError(f"meta should be a dict or None, but got {type(meta)}")
        # The epoch counter moves on after after_train_epoch, where CheckpointHook saves: hence +1.
        meta.setdefault("epoch", self.epoch + 1 if by_epoch else self.epoch)
        meta.setdefault("iter", self.iter if by_epoch else self.iter + 1)
        meta.update(cfg=self.cfg.pretty_text, experiment_name=self.experiment_name)
        if hasattr(self.train_dataloader.dataset, "metainfo"):
            meta.update(dataset_meta=self.train_dataloader.dataset.metainfo)
        checkpoint: dict[str, Any] = {"meta": meta, "message_hub": self.message_hub.state_dict()}

        def callback(ckpt: dict) -> None:
            self.call_hook("before_save_checkpoint", checkpoint=ckpt)

        self.strategy.save_checkpoint(
            filename=join_path(out_dir, filename, backend_args=backend_args),  # type: ignore[arg-type]
            save_optimizer=save_optimizer, save_param_scheduler=save_param_scheduler,
            extra_ckpt=checkpoint, callback=callback)
