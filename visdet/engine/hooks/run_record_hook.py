"""Records what one training run cost and achieved, in ``<work_dir>/run_record.json``, for comparing runs.

Comparing optimizers needs, per run, figures no mmengine log holds together:
the loss at every iteration, each validation's metrics against the *training*
wall time (the seconds spent in training steps: evaluation, data loading and
checkpoint writes excluded, so an optimizer is charged for its own work only),
a robust seconds-per-iteration, the bytes the optimizer's state tensors really
occupy (measured on the live optimizer, not the catalogue's per-parameter
estimate), the peak memory and the non-finite guard's skips.

The record is plain JSON written atomically (a reader never sees half a file)
at each validation, every ``interval`` iterations and at the end with
``finished: true``. It also travels in every checkpoint (plain types: visdet
loads checkpoints with ``weights_only=True``), so a resumed run's record
carries on: iterations and training seconds continue from the checkpoint.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from visdet.engine.checkpoint.atomic import atomic_write_bytes
from visdet.engine.hooks.memory_log_hook import peak_rss_mb
from visdet.engine.optim.wrappers.nonfinite import COUNTERS_KEY, SKIPS_SCALAR
from visdet.registry import HOOKS

#: File the record is written to, in the run's work dir.
RECORD_FILE = "run_record.json"
#: Key of the record in a checkpoint.
CHECKPOINT_KEY = "run_record"
#: Iterations at the start of each process's share of a run left out of seconds per iteration (warm-up).
WARMUP_ITERS = 2
#: Format of the record (bumped when a field changes meaning).
VERSION = 1


def _inner_optimizers(optimizer: Any) -> Iterator[torch.optim.Optimizer]:
    """Optimizers an optimizer holds as attributes: a hybrid's parts, Lookahead's/SAM's inner one, per-parameter.

    Looked up generically (any attribute that is an optimizer, or a dict/list/tuple
    of them) rather than by name, so a wrapper from any package is walked.
    """
    for value in getattr(optimizer, "__dict__", {}).values():
        if isinstance(value, torch.optim.Optimizer):
            yield value
        elif isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, torch.optim.Optimizer))
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.optim.Optimizer))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _storage_key(tensor: torch.Tensor) -> tuple[str, int, int]:
    storage = tensor.untyped_storage()
    return str(tensor.device), storage.data_ptr(), storage.nbytes()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the state tensors of ``optimizer`` and of every optimizer nested in it.

    Each storage is counted once (a state shared by a wrapper and its inner
    optimizer, or views of one buffer, are one allocation), and the model's own
    parameters are never counted even if an optimizer keeps a reference to them.
    """
    seen_optimizers: set[int] = set()
    params: set[tuple[str, int, int]] = set()
    storages: dict[tuple[str, int, int], int] = {}
    pending = [optimizer]
    while pending:
        opt = pending.pop()
        if id(opt) in seen_optimizers:
            continue
        seen_optimizers.add(id(opt))
        for group in getattr(opt, "param_groups", None) or []:  # a strategy's engine optimizer may lack either
            params.update(_storage_key(p) for p in group["params"] if isinstance(p, torch.Tensor))
        for state in list((getattr(opt, "state", None) or {}).values()):
            for tensor in _tensors(state):
                key = _storage_key(tensor)
                if key[2]:
                    storages[key] = key[2]
        pending.extend(_inner_optimizers(opt))
    return sum(size for key, size in storages.items() if key not in params)


def wrapper_optimizers(optim_wrapper: Any) -> list[torch.optim.Optimizer]:
    """The optimizers behind a runner's optim wrapper (one, or each of an ``OptimWrapperDict``'s)."""
    if hasattr(optim_wrapper, "optim_wrappers"):
        return [w.optimizer for w in optim_wrapper.optim_wrappers.values()]
    return [optim_wrapper.optimizer]


@HOOKS.register_module()
class RunRecordHook(Hook):
    """Write ``run_record.json``: losses, validations vs training time, s/iter, state bytes, memory, skips.

    Args:
        interval: Also write the record every ``interval`` iterations (a killed
            run's record is at most this far behind).
        filename: Name of the record in the work dir.
    """

    priority = "NORMAL"  # before CheckpointHook (VERY_LOW): a checkpoint's copy includes its own iteration

    def __init__(self, interval: int = 10, filename: str = RECORD_FILE) -> None:
        if int(interval) < 1:
            raise ValueError(f"RunRecordHook: interval must be >= 1, got {interval}")
        self.interval = int(interval)
        self.filename = filename
        self.record: dict[str, Any] = self._empty()
        self._mark: float | None = None  # perf_counter at the start of the current training step
        self._segment_iters = 0  # iterations trained by this process (the warm-up ones are not timed)
        self._training = False  # between before_train and after_run: validations belong to this run
        self._revalidate_at: int | None = None  # resumed at this iteration: validate it if its validation was lost

    @staticmethod
    def _empty() -> dict[str, Any]:
        return dict(version=VERSION, finished=False, iterations=[], validations=[], iter_seconds=[],
                    seconds_per_iter=None, train_seconds=0.0, optimizer_state_bytes=None, peak_memory_mib=None,
                    peak_memory_kind=None, nonfinite=dict(skips=0, consecutive=0), resumed_at=[])

    # --- training time: the seconds spent in training steps ------------------------------------------------
    # Forward, backward and the optimizer's step, from before_train_iter to after_train_iter. Data loading,
    # validation and checkpoint writing are left out: they are the same work whatever the optimizer, and on a
    # shared or busy disk a checkpoint write can take longer than several steps.
    def train_seconds(self) -> float:
        return float(self.record["train_seconds"])

    def before_train(self, runner) -> None:
        self._segment_iters = 0
        self._training = True

    def before_train_epoch(self, runner) -> None:
        # mmengine saves iteration N's checkpoint before validating at N; a run killed in between resumes past
        # that validation and never makes it. The checkpoint holds the very weights it evaluates, so it is made
        # here: after every hook's before_train (CheckpointHook's save_best needs its own), before the loop
        # puts the model back in train mode for the next iteration.
        at, self._revalidate_at = self._revalidate_at, None
        if at is not None and self._validation_lost(runner, at):
            runner.logger.info(f"RunRecordHook: validating iteration {at} again: the interrupted run saved its "
                               "checkpoint but did not finish that validation")
            runner.val_loop.run()

    def _validation_lost(self, runner, at: int) -> bool:
        """Whether mmengine's IterBasedTrainLoop validates after iteration ``at`` and the record has no
        validation there (epoch-based loops are left alone: their intervals count epochs)."""
        from mmengine.runner import IterBasedTrainLoop  # here: importing mmengine.runner at import time is loud

        if at in {v["iter"] for v in self.record["validations"]}:
            return False
        loop = getattr(runner, "train_loop", None)
        if not isinstance(loop, IterBasedTrainLoop) or getattr(runner, "_val_loop", None) is None:
            return False
        return at >= loop.val_begin and (at % loop.val_interval == 0 or at == loop.max_iters)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._mark = time.perf_counter()

    # --- what is recorded ---------------------------------------------------------------------------------
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: dict | None = None) -> None:
        step = time.perf_counter() - self._mark if self._mark is not None else 0.0
        self._mark = None
        self.record["train_seconds"] = now = self.train_seconds() + step
        loss = (outputs or {}).get("loss")
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else (float(loss) if loss is not None else None)
        self.record["iterations"].append(dict(iter=runner.iter + 1, loss=loss, train_s=round(now, 4),
                                              step_s=round(step, 5)))
        self._segment_iters += 1
        if self._segment_iters > WARMUP_ITERS:
            self.record["iter_seconds"].append(round(step, 5))
        skips = self.record["nonfinite"]["skips"]
        self._measure(runner)
        # A skipped step may be the start of the guard stopping the run (no after_run then): keep the record
        # on disk current, so a diverged run's curve reaches its last iteration.
        if (runner.iter + 1) % self.interval == 0 or self.record["nonfinite"]["skips"] > skips:
            self.write(runner)

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        if not self._training:
            return  # a plain evaluation (tools/test.py): no training record to add to
        plain = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        self.record["validations"].append(dict(iter=runner.iter, train_s=round(self.train_seconds(), 4),
                                               metrics=plain))
        self.write(runner)

    def after_run(self, runner) -> None:
        if not self._training:
            return
        self._training = False
        self.record["finished"] = True
        self.write(runner)

    def _measure(self, runner) -> None:
        """State bytes, peak memory and the guard's counters as they are now (all only grow or stay)."""
        wrapper = runner.optim_wrapper
        state = sum(optimizer_state_bytes(o) for o in wrapper_optimizers(wrapper))
        self.record["optimizer_state_bytes"] = max(int(self.record["optimizer_state_bytes"] or 0), state)
        on_cuda = torch.cuda.is_available() and next(runner.model.parameters()).is_cuda
        peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else peak_rss_mb()
        self.record["peak_memory_mib"] = round(max(float(self.record["peak_memory_mib"] or 0.0), peak), 1)
        self.record["peak_memory_kind"] = "cuda_allocated" if on_cuda else "peak_rss"
        skips = getattr(wrapper, "nonfinite_skips", None)
        if skips is None:  # a wrapper without visdet's counters: the message hub's scalar, if any
            scalar = runner.message_hub.log_scalars.get(SKIPS_SCALAR)
            skips = int(scalar.current()) if scalar is not None else 0
        self.record["nonfinite"] = dict(skips=int(skips),
                                        consecutive=int(getattr(wrapper, "consecutive_nonfinite", 0) or 0))

    def summary(self) -> dict[str, Any]:
        """The record with seconds per iteration filled in.

        The median of the steps after each process's first two (warm-up: allocator, kernels, caches); a run
        too short for any, or resumed in pieces that short, falls back to the median of all its steps.
        """
        timed = self.record["iter_seconds"] or [i["step_s"] for i in self.record["iterations"] if "step_s" in i]
        self.record["seconds_per_iter"] = round(statistics.median(timed), 5) if timed else None
        return self.record

    def write(self, runner) -> Path | None:
        """Write the record to the work dir atomically (main process only); returns the path written."""
        if not is_main_process():
            return None
        path = Path(runner.work_dir) / self.filename
        data = json.dumps(self.summary(), indent=1, allow_nan=True).encode()
        atomic_write_bytes(data, path)
        return path

    # --- travelling in checkpoints ------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        snapshot = json.loads(json.dumps(self.summary()))  # a deep copy of plain types only
        checkpoint[CHECKPOINT_KEY] = snapshot

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if not getattr(runner, "_resume", False) or not isinstance(saved, dict):
            return  # load_from (fine-tuning) starts a new record; an older checkpoint has none
        record = {**self._empty(), **json.loads(json.dumps(saved))}
        at = int(checkpoint.get("meta", {}).get("iter", record["iterations"][-1]["iter"] if record["iterations"]
                                                else 0))
        record["iterations"] = [i for i in record["iterations"] if i["iter"] <= at]
        # mmengine saves the checkpoint of iteration N before validating at N, so that validation is not in
        # the checkpoint's copy; the record on disk, written right after it, has it.
        on_disk = _read(Path(runner.work_dir) / self.filename)
        have = {v["iter"] for v in record["validations"]}
        extra = [v for v in (on_disk or {}).get("validations", []) if v.get("iter") == at and at not in have]
        record["validations"] = [v for v in record["validations"] if v["iter"] <= at] + extra
        record["finished"] = False
        record["resumed_at"] = [*record.get("resumed_at", []), at]
        self._revalidate_at = at
        nonfinite = (checkpoint.get("optimizer") or {}).get(COUNTERS_KEY)
        if isinstance(nonfinite, dict):
            record["nonfinite"] = dict(skips=int(nonfinite.get("total", 0)),
                                       consecutive=int(nonfinite.get("consecutive", 0)))
        self.record = record


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_record(work_dir: str | os.PathLike) -> dict | None:
    """The run record in ``work_dir``, or None when there is none (or it cannot be read)."""
    return _read(Path(work_dir) / RECORD_FILE)
