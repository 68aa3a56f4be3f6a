"""mmengine's CheckpointHook, with a best checkpoint that survives a kill during its replacement.

mmengine 0.10's ``CheckpointHook._save_best_checkpoint`` deletes the previous
``best_*.pth`` and only then writes the new one. visdet's writes are atomic
(:mod:`visdet.engine.checkpoint.atomic`: a temporary ``.<name>.XXXXXXXX.tmp`` renamed
into place), so a run killed during that write is left with no best checkpoint
at all, only the temporary, which nothing removes (the full size of a model).

Its regular save has the same order fault: with ``max_keep_ckpts`` it deletes
the oldest kept checkpoint *before* writing the new one (with ``max_keep_ckpts=1``
a kill mid-write leaves no checkpoint at all), and it writes the
``last_checkpoint`` pointer with a plain ``open()`` (a kill there leaves it empty
and ``--resume`` cannot find anything).

This subclass, registered in visdet's ``HOOKS`` under mmengine's name (so every
config's ``type='CheckpointHook'`` gets it), writes first and removes after: the
previous best stays until the new one and the epoch checkpoint that names it
are written, an outdated checkpoint stays until the new one and the pointer to
it are in place, and the pointer is written atomically. When training starts
it removes the temporaries an interrupted run left.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Any

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.logging import print_log

from visdet.engine.checkpoint.atomic import atomic_write_bytes, remove_stale_temporaries
from visdet.registry import HOOKS


@HOOKS.register_module(name="CheckpointHook", force=True)  # force: survives re-import
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook``; the previous best checkpoint is removed only once the new one exists."""

    def before_train(self, runner) -> None:
        """mmengine's set-up, then remove unfinished checkpoint writes of an interrupted run (rank 0)."""
        super().before_train(runner)
        if not is_main_process() or not isinstance(self.file_backend, LocalBackend):
            return
        for folder in dict.fromkeys([str(self.out_dir), str(runner.work_dir)]):
            removed = remove_stale_temporaries(folder)
            if removed:
                print_log(f"Removed {len(removed)} unfinished checkpoint write(s) an interrupted run left in "
                          f"{folder}: {', '.join(p.name for p in removed)}", logger="current", level=logging.INFO)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """mmengine 0.10's save of ``epoch_N``/``iter_N``, reordered: write, point to it, then remove the outdated one.

        Rewritten rather than wrapped because the unsafe order (remove, then
        write) and the plain pointer write sit inside mmengine's one method.
        """
        outdated = None
        # _save_checkpoint and _save_best_checkpoint may both save this step in one epoch: count it once.
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, ckpt_filename, self.file_client_args,
                               save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():  # sharded states were gathered above; the files are rank 0's
            return
        atomic_write_bytes(str(self.last_ckpt).encode(), osp.join(runner.work_dir, "last_checkpoint"))
        if outdated is not None:
            self._remove(runner, self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated)),
                         what="outdated")

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

    def _remove(self, runner, path: str, what: str = "previous best") -> None:
        """Remove a replaced checkpoint (a folder for DeepSpeed), as mmengine would have."""
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            self.file_backend.rmtree(path)
        else:
            return
        runner.logger.info(f"The {what} checkpoint {path} is removed")
