"""The second-order driver: ``backward(create_graph=True)`` for optimizers that estimate the Hessian.

pytorch-optimizer's SophiaH and AdaHessian estimate the Hessian diagonal
inside ``step()`` by Hutchinson's method: ``autograd.grad(p.grad, p, z)`` for
random ``z``, which needs each ``p.grad`` to carry its graph, i.e. the loss
back-propagated with ``create_graph=True``. mmengine's ``update_params`` has no
way to ask for that; this driver runs the iteration itself:

1. preprocess, then forward with every module that offers a twice-differentiable
   path switched to it (a boolean ``double_backward`` attribute, e.g. the RoI
   extractor: torchvision's ``roi_align`` has no double backward);
2. ``wrapper.update_params(loss)`` with the wrapper's backward taking
   ``create_graph=True``, so the non-finite guard, ``clip_grad`` and
   ``accumulative_counts`` work as for any optimizer: a window with a
   non-finite loss or gradients zeroes them and skips ``step()`` (no Hessian
   estimate, parameters and state bit-identical);
3. the graph is freed by the wrapper's ``zero_grad`` after the step (and by the
   optimizer's last Hessian-vector product before it), so nothing accumulates.

Only the steps that estimate the Hessian need the graph: an optimizer that
counts steps in ``param_groups[0]['step']`` and re-estimates every
``update_period`` steps (both classes; SophiaH's default is 10) gets a plain
backward and the fast RoI kernel on the other steps.

``clip_grad`` clips the first-order gradients in place before ``step()``
(outside autograd), so the Hessian is estimated for the loss itself and the
momentum sees the clipped gradients. With ``accumulative_counts > 1`` every
micro-batch of a window that estimates the Hessian keeps its graph until the
step (memory grows with the window). Refused: a loss scaler (float16 AMP: the
scaled gradients' graph would give a scaled Hessian, unscaled in place) and
several processes (DDP replaces each ``p.grad`` with its all-reduced value,
which has no graph).
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch

from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.catalog.spec import Need
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.train_step import forward_losses, preprocess, register_driver, unwrap

#: Attributes under which a wrapper-optimizer (Lookahead, ...) keeps the optimizer it wraps.
INNER = ("optimizer", "base_optimizer")
_KEY = "optim_wrapper"


def _chain(optimizer: Any) -> Iterator[Any]:
    """``optimizer`` and, through wrapper-optimizers, each optimizer it wraps."""
    seen: set[int] = set()
    while isinstance(optimizer, torch.optim.Optimizer) and id(optimizer) not in seen:
        seen.add(id(optimizer))
        yield optimizer
        optimizer = next((getattr(optimizer, a) for a in INNER if hasattr(optimizer, a)), None)


def _is_second_order(optimizer: torch.optim.Optimizer) -> bool:
    """Its catalogue record needs create_graph, or its ``step`` takes a ``hessian``."""
    spec = spec_for_class(type(optimizer))
    if spec is not None and Need.CREATE_GRAPH in spec.needs:
        return True
    try:
        return "hessian" in inspect.signature(optimizer.step).parameters
    except (TypeError, ValueError):
        return False


def second_order_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
    """The optimizer in ``optimizer``'s chain that estimates the Hessian, or None."""
    return next((o for o in _chain(optimizer) if _is_second_order(o)), None)


def applies_to(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` (or the one it wraps) needs ``backward(create_graph=True)``."""
    return second_order_optimizer(optimizer) is not None


def estimates_hessian_next(optimizer: torch.optim.Optimizer) -> bool:
    """Whether its next ``step()`` estimates the Hessian (so this backward must keep the graph).

    pytorch-optimizer's rule: at step counts ``s`` (before the step) with
    ``s % update_period == 0``. An optimizer without ``update_period`` (timm's
    Adahessian counts per parameter, ``update_each``) is taken to estimate it at
    every step: always correct, only slower.
    """
    second = second_order_optimizer(optimizer)
    period = getattr(second, "update_period", None)
    if second is None or not isinstance(period, int) or period < 1 or not second.param_groups:
        return True
    return int(second.param_groups[0].get("step", 0)) % period == 0


@contextmanager
def double_backward(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Switch every module with a boolean ``double_backward`` attribute to its twice-differentiable path."""
    switched = [m for m in unwrap(model).modules() if isinstance(getattr(m, "double_backward", None), bool)]
    before = [m.double_backward for m in switched]
    for module in switched:
        module.double_backward = module.double_backward or enabled
    try:
        yield
    finally:
        for module, value in zip(switched, before):
            module.double_backward = value


@contextmanager
def create_graph(wrapper: Any, enabled: bool = True) -> Iterator[None]:
    """Make ``wrapper.backward`` keep the graph (an instance attribute, removed on exit)."""
    if not enabled:
        yield
        return
    wrapper.backward = partial(type(wrapper).backward, wrapper, create_graph=True)
    try:
        with warnings.catch_warnings():
            # torch warns that p.grad <-> p form a reference cycle "unless .grad is reset to None after use":
            # the wrapper's zero_grad after the step (and a skipped step's) does exactly that.
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            yield
    finally:
        del wrapper.backward


def check_can_drive(wrapper: Any) -> None:
    """Refuse what cannot give a correct Hessian estimate: a loss scaler, several processes."""
    name = type(second_order_optimizer(wrapper.optimizer)).__name__
    if getattr(wrapper, "loss_scaler", None) is not None:
        raise OptimizerConfigError(
            f"{name} estimates the Hessian from the gradients' graph, which a float16 loss scaler scales and "
            "unscales in place; use dtype='bfloat16' with AmpOptimWrapper, or OptimWrapper", f"{_KEY}.type")
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise OptimizerConfigError(
            f"{name} needs backward(create_graph=True), which DistributedDataParallel does not support (its "
            "all-reduced gradients have no graph); train it in one process", f"{_KEY}.optimizer.type")


def drive(wrapper: Any, model: torch.nn.Module, data: Any) -> dict:
    """One iteration: forward (twice-differentiable where needed), create_graph backward, guarded step."""
    check_can_drive(wrapper)
    keep_graph = estimates_hessian_next(wrapper.optimizer)
    batch = preprocess(model, data)
    with double_backward(model, keep_graph):
        forward = forward_losses(model, batch, wrapper)
    with create_graph(wrapper, keep_graph):
        wrapper.update_params(forward.loss)
    # Logged values are the loss tensors themselves: detached, so the log does not hold the graph.
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in forward.log_vars.items()}


register_driver("second_order", applies_to, drive)
