"""Resuming with an optimizer the checkpoint was not saved with: refused before training, or started fresh on request.

mmengine's ``Runner.resume`` loads the checkpoint's optimizer state into
whatever optimizer the config builds. torch's ``Optimizer.load_state_dict``
replaces each parameter group's hyper-parameters with the saved ones and keeps
the saved per-parameter state, so a changed optimizer ends badly: AdamW state
in an SGD optimizer logs ``resumed epoch: 2`` and then fails in the first step
with ``KeyError: 'momentum'``; a changed ``paramwise_cfg`` (another group
layout) fails with a ``ValueError`` about group sizes, or, worse, loads the
state of one parameter into another of the same count.

:func:`resume_checked` (called by visdet's ``Runner.resume``) compares the
checkpoint's optimizer state with the built optimizer right after the file is
read, before anything is restored, and raises a :class:`ConfigError` that
says how to go on:

* ``load_from=CKPT`` without ``--resume``: a new run from the weights only;
* ``--resume CKPT --cfg-options resume_optimizer=False``: the model, the
  epoch/iteration and the learning-rate schedule are resumed, the optimizer
  starts fresh (mmengine's ``resume(resume_optimizer=False)``). The schedulers
  are rebuilt for the new optimizer and stepped to the checkpoint's step
  count, so the learning rate is the new optimizer's schedule at that point
  (loading the saved scheduler state would carry the old optimizer's base
  learning rates over).
"""
from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from mmengine.logging import print_log

from visdet.errors import ConfigError

#: The top-level config key that asks to start the optimizer fresh when resuming (mmengine's argument name).
RESUME_OPTIMIZER_KEY = "resume_optimizer"
#: Parameter-group keys that torch versions and implementations add or drop; they do not tell optimizers apart.
VERSION_KEYS = frozenset({"params", "foreach", "maximize", "capturable", "differentiable", "fused", "initial_lr",
                          "param_names"})


def fresh_optimizer_requested(cfg: Mapping[str, Any]) -> bool:
    """Whether the config says ``resume_optimizer=False``; a value that is not a bool is a ConfigError."""
    value = cfg.get(RESUME_OPTIMIZER_KEY, True)
    if not isinstance(value, bool):
        raise ConfigError(f"must be True (resume the optimizer state, the default) or False (with --resume: start "
                          f"the optimizer fresh), got {value!r}", RESUME_OPTIMIZER_KEY)
    return not value


def _saved_type(checkpoint: Mapping[str, Any]) -> str | None:
    """The optimizer type in the config text mmengine stores in the checkpoint's meta, when it can be read."""
    from mmengine.config import Config

    text = (checkpoint.get("meta") or {}).get("cfg")
    try:
        optimizer_type = Config.fromstring(text, file_format=".py").optim_wrapper.optimizer.type
    except Exception:  # no config text, or one that no longer parses: the message goes without the name
        return None
    return optimizer_type if isinstance(optimizer_type, str) else None


def _state_keys(optimizer: torch.optim.Optimizer, group: Mapping[str, Any]) -> set[str] | None:
    """The per-parameter state keys ``optimizer``'s class keeps with ``group``'s hyper-parameters (None: unknown).

    Found by one step of the same class on a throwaway vector. Only for torch's
    own optimizers, whose state does not depend on the parameter's shape or size
    (Adafactor's does, as does 8-bit state: for those the group keys decide).
    """
    cls = type(optimizer)
    if not cls.__module__.startswith("torch.optim") or cls.__name__ in ("Adafactor", "SparseAdam", "LBFGS"):
        return None
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in group.items() if k in accepted and k not in ("params", "fused", "foreach")}
    try:
        probe = torch.zeros(3, requires_grad=True)
        dummy = cls([probe], **kwargs)
        probe.grad = torch.ones(3)
        dummy.step()
        return set(dummy.state[probe])
    except Exception:  # a hyper-parameter combination the class refuses: the group keys have spoken already
        return None


def optimizer_mismatch(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> str | None:
    """How the checkpoint's optimizer state ``saved`` does not fit ``optimizer`` (None: it fits).

    Compares the number of parameter groups, the parameters in each, the
    hyper-parameter names of each group (a different optimizer type), Adam's
    and AdamW's weight-decay flavour, and the per-parameter state keys.
    """
    routes, saved_routes = getattr(optimizer, "optimizers", None), saved.get("optimizers")
    if isinstance(routes, Mapping) or isinstance(saved_routes, Mapping):  # visdet's HybridOptimizer (Muon + ...)
        if not isinstance(saved_routes, Mapping):
            return f"the config's optimizer routes parameters to {', '.join(routes)}; the checkpoint's is one optimizer"
        if not isinstance(routes, Mapping):
            return (f"the checkpoint's optimizer routed parameters to {', '.join(saved_routes)}; "
                    f"the config's {type(optimizer).__name__} is one optimizer")
        if list(routes) != list(saved_routes):
            return f"its routes are {', '.join(saved_routes)}, the config's {', '.join(routes)}"
        for name, sub in routes.items():
            reason = optimizer_mismatch(saved_routes[name], sub)
            if reason is not None:
                return f"route '{name}': {reason}"
        return None
    saved_groups = saved.get("param_groups")
    if not isinstance(saved_groups, list):
        return None  # not a torch optimizer state dict (a custom format): nothing to compare
    groups = optimizer.param_groups
    if len(saved_groups) != len(groups):
        return (f"it has {len(saved_groups)} parameter groups, the config's optimizer {len(groups)} "
                "(a changed paramwise_cfg or model)")
    for index, (old, new) in enumerate(zip(saved_groups, groups)):
        if len(old.get("params", ())) != len(new["params"]):
            return (f"its parameter group {index} holds {len(old.get('params', ()))} parameters, the config's "
                    f"{len(new['params'])} (a changed paramwise_cfg or model)")
        old_keys, new_keys = set(old) - VERSION_KEYS, set(new) - VERSION_KEYS
        old_keys.discard("decoupled_weight_decay")
        new_keys.discard("decoupled_weight_decay")
        if old_keys != new_keys:
            return (f"its hyper-parameters are {', '.join(sorted(old_keys))}; the config's "
                    f"{type(optimizer).__name__} has {', '.join(sorted(new_keys))}")
        if "decoupled_weight_decay" in old and "decoupled_weight_decay" in new \
                and bool(old["decoupled_weight_decay"]) != bool(new["decoupled_weight_decay"]):
            flavours = {True: "AdamW's decoupled", False: "Adam's L2"}
            return (f"it uses {flavours[bool(old['decoupled_weight_decay'])]} weight decay, the config's "
                    f"{type(optimizer).__name__} {flavours[bool(new['decoupled_weight_decay'])]}")
    states = saved.get("state") or {}
    if states and saved_groups:
        expected = _state_keys(optimizer, saved_groups[0])
        found = set().union(*(set(s) for s in states.values()))
        if expected is not None and found != expected:
            return (f"its per-parameter state holds {', '.join(sorted(found))}; the config's "
                    f"{type(optimizer).__name__} keeps {', '.join(sorted(expected)) or 'none'}")
    return None


def check_optimizer_fits(checkpoint: Mapping[str, Any], optim_wrapper: Any, filename: str) -> None:
    """Raise a ConfigError when the checkpoint's optimizer state does not fit the built optimizer."""
    optimizer = getattr(optim_wrapper, "optimizer", None)
    saved = checkpoint.get("optimizer")
    if not isinstance(optimizer, torch.optim.Optimizer) or not isinstance(saved, Mapping):
        return  # several optimizers (OptimWrapperDict) or no optimizer state: mmengine's own handling
    reason = optimizer_mismatch(saved, optimizer)
    if reason is None:
        return
    old_type, new_type = _saved_type(checkpoint), type(optimizer).__name__
    saved_with = f"; the checkpoint's was {old_type}" if old_type and old_type != new_type else ""
    raise ConfigError(
        f"the optimizer state in checkpoint '{filename}' differs from the config's optimizer ({new_type}"
        f"{saved_with}): {reason}. Resuming would load it into the new optimizer and fail or "
        f"misbehave in the first step. To go on from its weights, either start a new run from the weights only "
        f"(load_from='{filename}' without --resume: epoch and schedule start from 0), or resume the model, "
        f"epoch and learning-rate schedule with a fresh optimizer (--resume {filename} --cfg-options "
        f"{RESUME_OPTIMIZER_KEY}=False)", "optim_wrapper.optimizer")


def _replay_schedulers(runner: Any, checkpoint: Mapping[str, Any]) -> None:
    """Step the freshly built schedulers to the checkpoint's step counts, for the new optimizer."""
    schedulers, saved = runner.param_schedulers, checkpoint.get("param_schedulers")
    if not schedulers or not saved:
        return
    if isinstance(schedulers, dict):
        pairs = [(s, state) for name in schedulers for s, state in zip(schedulers[name], saved.get(name, []))]
    else:
        pairs = list(zip(schedulers, saved))
    targets = [(s, int(state.get("last_step", 0))) for s, state in pairs]
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": this is no training step
        warnings.simplefilter("ignore")
        while any(s.last_step < target for s, target in targets):
            for s, target in targets:  # in the order ParamSchedulerHook steps them
                if s.last_step < target:
                    s.step()


def resume_checked(runner: Any, resume: Callable[..., None], filename: str, resume_optimizer: bool = True,
                   resume_param_scheduler: bool = True, map_location: Any = "default") -> None:
    """mmengine's ``resume`` (passed as ``resume``), refusing an optimizer state that does not fit the config's.

    With ``resume_optimizer=False`` in the config, the optimizer starts fresh and
    the schedulers follow it (see the module docstring).
    """
    fresh = fresh_optimizer_requested(runner.cfg)
    loaded: dict[str, Any] = {}
    load_checkpoint = runner.load_checkpoint

    def load_and_check(*args: Any, **kwargs: Any) -> Any:
        checkpoint = load_checkpoint(*args, **kwargs)
        loaded["checkpoint"] = checkpoint
        if resume_optimizer and not fresh and isinstance(checkpoint, Mapping):
            check_optimizer_fits(checkpoint, runner.optim_wrapper, filename)
        return checkpoint

    # mmengine's resume reads the file itself and restores the optimizer a few lines later; wrapping
    # the loader on this instance is the only point in between (the check must precede any restore).
    runner.load_checkpoint = load_and_check
    try:
        resume(filename, resume_optimizer=resume_optimizer and not fresh,
               resume_param_scheduler=resume_param_scheduler and not fresh, map_location=map_location)
    finally:
        del runner.load_checkpoint
    if fresh:
        if resume_param_scheduler:
            _replay_schedulers(runner, loaded.get("checkpoint") or {})
        optimizer = getattr(runner.optim_wrapper, "optimizer", None)
        lrs = sorted({f"{g['lr']:.4g}" for g in optimizer.param_groups}) if optimizer is not None else []
        print_log(f"{RESUME_OPTIMIZER_KEY}=False: resumed the model, epoch {runner.epoch}, iteration {runner.iter} "
                  f"and the schedule from {filename}; the optimizer ({type(optimizer).__name__}) starts fresh "
                  f"(learning rate now {', '.join(lrs)})", logger="current", level=logging.WARNING)
