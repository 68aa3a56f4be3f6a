"""One training iteration, driven by the optimizer when it needs more than ``backward(); step()``.

mmengine's loops call ``model.train_step(data, optim_wrapper)``: preprocess,
forward, parse the losses, ``optim_wrapper.update_params(loss)``. That is all
a plain optimizer needs, and the wrapper never sees the batch or the model.
Some optimizers need them: a closure optimizer (SAM, LBFGS) re-evaluates the
loss on the same batch inside ``step(closure)``, PCGrad wants each loss term
on its own, a second-order one (SophiaH) needs ``backward(create_graph=True)``.
mmengine has no place for this (mmcv#2190 told SAM users to write their own
``train_step``), so visdet's loops call :func:`train_step` here instead: it
asks the wrapper's ``drive_train_step(model, data)``, which picks a *driver*
for its optimizer from :data:`DRIVERS` (one per kind, chosen by what the
optimizer object is, never by its class name); with no driver it returns
``NotImplemented`` and mmengine's path runs unchanged.

:func:`preprocess` and :func:`forward_losses` are the two halves of
mmengine's ``train_step`` that drivers reuse; under DDP (``model`` an mmengine
model wrapper) the forward goes through the wrapper, so its reducer sees the
pass, and ``model.module`` preprocesses and parses.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from mmengine.model import is_model_wrapper

#: A driver: runs one iteration of ``model`` on ``data`` with ``wrapper``; returns the log variables.
Driver = Callable[[Any, torch.nn.Module, Any], dict]
#: The kinds of optimizer that need their own iteration, as (name, applies_to(optimizer), driver), tried in
#: order. Each kind's module appends its entry when imported (see :func:`register_driver`).
DRIVERS: list[tuple[str, Callable[[torch.optim.Optimizer], bool], Driver]] = []


def register_driver(name: str, applies_to: Callable[[torch.optim.Optimizer], bool], driver: Driver) -> None:
    """Add (or replace, by ``name``) the driver for the optimizers ``applies_to`` accepts."""
    DRIVERS[:] = [entry for entry in DRIVERS if entry[0] != name]
    DRIVERS.append((name, applies_to, driver))


def driver_for(optimizer: torch.optim.Optimizer) -> tuple[str, Driver] | None:
    """The (name, driver) of the first kind ``optimizer`` belongs to, or None for a plain optimizer.

    The drivers register when ``wrappers/drivers`` is imported, which visdet's ``optim_wrapper`` module (the
    wrappers that call this) does; importing it from here would close an import circle (drivers -> here).
    """
    for name, applies_to, driver in DRIVERS:
        if applies_to(optimizer):
            return name, driver
    return None


def train_step(model: torch.nn.Module, data: Any, optim_wrapper: Any) -> dict:
    """One training iteration: the wrapper's own when its optimizer needs one, else mmengine's."""
    drive = getattr(optim_wrapper, "drive_train_step", None)
    if drive is not None:
        log_vars = drive(model, data)
        if log_vars is not NotImplemented:
            return log_vars
    return model.train_step(data, optim_wrapper=optim_wrapper)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The detector itself: ``model.module`` under an mmengine model wrapper (DDP), else ``model``."""
    return model.module if is_model_wrapper(model) else model


def preprocess(model: torch.nn.Module, data: Any) -> Any:
    """The batch after the detector's data preprocessor (once per iteration: later passes reuse it)."""
    return unwrap(model).data_preprocessor(data, training=True)


@dataclass
class Forward:
    """One forward pass's losses: the raw dict, their sum (what backward takes) and the logged values."""

    losses: dict
    loss: torch.Tensor
    log_vars: dict


def forward_losses(model: torch.nn.Module, batch: Any, optim_wrapper: Any) -> Forward:
    """Forward ``batch`` in 'loss' mode inside the wrapper's context (autocast, no_sync) and parse the losses."""
    with optim_wrapper.optim_context(model):
        losses = model._run_forward(batch, mode="loss")
    loss, log_vars = unwrap(model).parse_losses(losses)
    return Forward(losses, loss, log_vars)
