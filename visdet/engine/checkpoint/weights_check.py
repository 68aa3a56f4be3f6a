"""Does a checkpoint's state dict fit the model it is loaded into? Checked before mmengine loads it.

mmengine's ``Runner.load_checkpoint`` loads with ``strict=False``: keys the
model lacks, keys the checkpoint lacks and tensors of another shape are only
logged (``size mismatch for ...``) and the model keeps its random initial
values there. So ``tools/test.py`` with an R50 checkpoint on an R18 config
printed an mAP for random weights and exited 0. Here the checkpoint's weights
are read the way mmengine reads them (visdet's safe loader, a DeepSpeed folder's
module weights, the ``state_dict`` entry, the ``module.`` prefix stripped) and
compared, key by key and shape by shape, with ``model.state_dict()``:

* evaluation (:func:`check_evaluation_weights`) refuses any difference with a
  :class:`~visdet.errors.CheckpointError` naming the first keys, unless the user
  allows a partial load (``--allow-partial-load``), which is then logged as a
  WARNING with the counts;
* ``load_from`` in training (:func:`check_load_from`) refuses a checkpoint that
  shares no weight with the model, and warns with counts and keys when it fits
  only in part (fine-tuning with another ``num_classes`` is a normal use).

The one difference not reported is a missing BatchNorm ``num_batches_tracked``
counter, which mmengine's loader also ignores: checkpoints from older torch
versions lack it and it only matters for ``momentum=None``.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from visdet.errors import CheckpointError

#: How many keys a message names per kind of difference.
NAMED_KEYS = 3
#: mmengine's default ``revise_keys`` for ``Runner.load_checkpoint``.
_PREFIX = re.compile(r"^module\.")


@dataclass
class WeightsFit:
    """How a checkpoint's state dict and a model's state dict differ."""

    model_keys: int
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, ckpt, model
    counters_missing: int = 0  # BatchNorm num_batches_tracked not in the checkpoint: not a misfit (module docstring)

    @property
    def exact(self) -> bool:
        """Every model weight comes from the checkpoint and the checkpoint has nothing else."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def loaded(self) -> int:
        """Model entries the checkpoint fills (same key, same shape)."""
        return self.model_keys - len(self.missing) - len(self.mismatched) - self.counters_missing

    def counts(self) -> str:
        """``'120 of 150 model weights loaded; 10 missing, 4 unexpected, 20 of another shape'``."""
        return (f"{self.loaded} of {self.model_keys} model weights loaded; {len(self.missing)} missing from the "
                f"checkpoint, {len(self.unexpected)} in the checkpoint but not in the model, "
                f"{len(self.mismatched)} of another shape")

    def details(self, limit: int = NAMED_KEYS) -> str:
        """The first ``limit`` keys of each kind of difference, on one line."""
        parts = []
        if self.mismatched:
            parts.append("shape differs: " + ", ".join(
                f"{key} (checkpoint {list(ckpt)}, model {list(model)})" for key, ckpt, model in
                self.mismatched[:limit]) + _more(self.mismatched, limit))
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing[:limit]) + _more(self.missing, limit))
        if self.unexpected:
            parts.append("unexpected: " + ", ".join(self.unexpected[:limit]) + _more(self.unexpected, limit))
        return "; ".join(parts)


def _more(items: list, limit: int) -> str:
    return f" (+{len(items) - limit} more)" if len(items) > limit else ""


def read_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """The weights a checkpoint gives the model, read as ``Runner.load_checkpoint`` reads them.

    mmengine's ``CheckpointLoader`` picks the loader visdet installed for the
    path (:mod:`visdet.engine.checkpoint.install`: a file with the safe loader, a
    DeepSpeed folder's module weights; a remote name only from the torch hub
    cache); then, as in mmengine, the ``state_dict`` entry with ``module.`` stripped.

    Raises:
        CheckpointError: The checkpoint cannot be read, or holds no state dict.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    path = os.fspath(path)
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location="cpu", logger="current")
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a state dict")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path}: its 'state_dict' is a {type(state).__name__}, "
                              "not a dict of tensors")
    return {_PREFIX.sub("", key): value for key, value in state.items()}


def _name(path: str | os.PathLike) -> str:
    """A local checkpoint by its absolute path; a remote one (``https://``, ``torchvision://``) as given."""
    path = os.fspath(path)
    return os.path.abspath(path) if os.path.exists(path) else path


def compare_state_dicts(model_state: Mapping[str, Any], checkpoint_state: Mapping[str, Any]) -> WeightsFit:
    """Keys and shapes of ``checkpoint_state`` against ``model_state`` (both in the model's key order)."""
    fit = WeightsFit(model_keys=len(model_state))
    for key, value in model_state.items():
        if key not in checkpoint_state:
            if key.endswith("num_batches_tracked"):
                fit.counters_missing += 1
            else:
                fit.missing.append(key)
            continue
        ckpt_shape, model_shape = _shape(checkpoint_state[key]), _shape(value)
        if ckpt_shape != model_shape:
            fit.mismatched.append((key, ckpt_shape, model_shape))
    fit.unexpected = [key for key in checkpoint_state if key not in model_state]
    return fit


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else ()


def model_state_dict(runner: Any) -> Mapping[str, Any]:
    """The state dict the runner loads a checkpoint into (the module inside DDP).

    A FlexibleRunner keeps the model as a config until its strategy builds it;
    then the model is built here on the meta device: keys and shapes, no memory.
    """
    model = runner.model
    if isinstance(model, torch.nn.Module):
        return (model.module if is_model_wrapper(model) else model).state_dict()
    from mmengine.registry import DefaultScope

    from visdet.registry import MODELS

    with DefaultScope.overwrite_default_scope(runner.cfg.get("default_scope", "visdet")), torch.device("meta"):
        return MODELS.build(model).state_dict()


def check_evaluation_weights(runner: Any, path: str | os.PathLike, allow_partial: bool = False) -> WeightsFit:
    """Refuse a checkpoint that does not fill the evaluated model exactly (``tools/test.py``).

    An mAP of partly random weights is a wrong number, so any difference is a
    CheckpointError naming the first keys; ``allow_partial`` (``--allow-partial-load``)
    evaluates anyway and logs the counts as a WARNING.
    """
    fit = compare_state_dicts(model_state_dict(runner), read_state_dict(path))
    if fit.exact:
        return fit
    if not allow_partial:
        raise CheckpointError(
            f"checkpoint {_name(path)} does not fit the model of this config ({fit.counts()}); "
            f"{fit.details()}. Evaluating it would score partly random weights: pass the config it was trained "
            "with, or --allow-partial-load to evaluate anyway")
    print_log(f"--allow-partial-load: evaluating {_name(path)}, which fits the model only in part "
              f"({fit.counts()}; the rest keeps its initial values): {fit.details()}",
              logger="current", level=logging.WARNING)
    return fit


def check_load_from(runner: Any) -> WeightsFit | None:
    """``load_from`` in training: refuse a checkpoint that shares no weight with the model, warn on a partial fit.

    Resuming is left to mmengine (it restores the optimizer too, so a misfit fails there).
    """
    path = runner.cfg.get("load_from")
    if not path or runner.cfg.get("resume"):
        return None
    fit = compare_state_dicts(model_state_dict(runner), read_state_dict(path))
    if fit.loaded == 0 and fit.model_keys:
        raise CheckpointError(
            f"load_from={path} shares no weight with the model of this config ({fit.counts()}); {fit.details()}. "
            "Is it a checkpoint of another architecture?")
    if not fit.exact:
        print_log(f"load_from={path} fits the model only in part ({fit.counts()}; the rest keeps its initial "
                  f"values, as when fine-tuning with another num_classes): {fit.details()}",
                  logger="current", level=logging.WARNING)
    return fit
