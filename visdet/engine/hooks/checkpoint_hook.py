"""mmengine's CheckpointHook, with a best checkpoint that survives a kill during its replacement.

mmengine 0.10's ``CheckpointHook._save_best_checkpoint`` deletes the previous
``best_*.pth`` and only then writes the new one. visdet's writes are atomic
(:mod:`visdet.engine.checkpoint_io`: a temporary ``.<name>.XXXXXXXX.tmp`` renamed
into place), so a run killed during that write is left with no best checkpoint
at all, only the temporary, which nothing removes (the full size of a model).

This subclass, registered in visdet's ``HOOKS`` under mmengine's name (so every
config's ``type='CheckpointHook'`` gets it), keeps the previous best until the
new one and the epoch checkpoint that names it are written, then removes it;
and when training starts it removes the temporaries an interrupted run left.
"""
from __future__ import annotations

import logging
from typing import Any

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.logging import print_log

from visdet.registry import HOOKS


@HOOKS.register_module(name="CheckpointHook", force=True)  # force: survives re-import
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook``; the previous best checkpoint is removed only once the new one exists."""

    def before_train(self, runner) -> None:
        """mmengine's set-up, then remove unfinished checkpoint writes of an interrupted run (rank 0)."""
        from visdet.engine import checkpoint_io  # here: importing mmengine.runner at import time prints (DeepSpeed)

        super().before_train(runner)
        if not is_main_process() or not isinstance(self.file_backend, LocalBackend):
            return
        for folder in dict.fromkeys([str(self.out_dir), str(runner.work_dir)]):
            removed = checkpoint_io.remove_stale_temporaries(folder)
            if removed:
                print_log(f"Removed {len(removed)} unfinished checkpoint write(s) an interrupted run left in "
                          f"{folder}: {', '.join(p.name for p in removed)}", logger="current", level=logging.INFO)

    def _best_paths(self) -> dict[str | None, Any]:
        """The current best checkpoint per key indicator (``None``: the single-metric attribute)."""
        if len(self.key_indicators) == 1:
            return {None: getattr(self, "best_ckpt_path", None)}
        return dict(self.best_ckpt_path_dict)

    def _set_best_path(self, key: str | None, path: Any) -> None:
        if key is None:
            self.best_ckpt_path = path
        else:
            self.best_ckpt_path_dict[key] = path

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """mmengine's best save with the previous best hidden from it, then removed once replaced.

        mmengine removes ``best_ckpt_path`` before writing the new file; with the
        path set aside it has nothing to remove. A metric that did not improve
        gets its path back; one that did has the new file and the re-saved epoch
        checkpoint naming it on disk before the old file goes.
        """
        if not self.save_best:
            return
        previous = self._best_paths()
        for key in previous:
            self._set_best_path(key, None)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            current = self._best_paths()
            for key, old in previous.items():
                if current.get(key) is None:  # not improved (or the save failed): still the old best
                    self._set_best_path(key, old)
        if not is_main_process():
            return
        current = self._best_paths()
        for key, old in previous.items():
            if old and current.get(key) != old:
                self._remove(runner, str(old))

    def _remove(self, runner, path: str) -> None:
        """Remove a replaced best checkpoint (a folder for DeepSpeed), as mmengine would have."""
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            self.file_backend.rmtree(path)
        else:
            return
        runner.logger.info(f"The previous best checkpoint {path} is removed")
