"""The loss-list driver: one iteration for optimizers that take the loss terms one by one (PCGrad).

PCGrad (pytorch-optimizer) projects each task's gradient off the others'
where they conflict; it replaces ``loss.backward()`` with
``optimizer.pc_backward(losses)``, which runs one backward per term. For a
detector the terms are its losses: RPN classification and box regression,
RoI classification and box regression — each entry of the losses dict whose
key contains ``'loss'``, summed when it is a list, as mmengine's
``parse_losses`` does. The cost is one backward pass per term (four for
Faster R-CNN) against one for a plain optimizer; the forward runs once.

The step goes through the wrapper, so its non-finite guard holds: a
non-finite term (the total is then non-finite) or gradient skips the step
with parameters and state untouched, counted as any skip. ``clip_grad``
clips the projected gradient. Gradient accumulation (``pc_backward`` zeroes
the gradients before each term) and float16's loss scaler (it would have to
scale each term) are refused. The driver applies whenever the optimizer, or
one it wraps (``Lookahead`` around ``PCGrad``), has ``pc_backward``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visdet.engine.optim.build.nested_optimizer import optimizer_chain
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.train_step import forward_losses, preprocess, register_driver

WRAPPER_KEY = "optim_wrapper"


def loss_list_optimizer(optimizer: torch.optim.Optimizer) -> Any:
    """The optimizer in ``optimizer``'s chain that takes a list of losses (has ``pc_backward``), or None."""
    return next((item for item in optimizer_chain(optimizer) if callable(getattr(item, "pc_backward", None))), None)


def loss_terms(losses: dict[str, Any]) -> list[torch.Tensor]:
    """The detector's loss terms, one scalar each: the ``'loss'`` entries, lists summed (mmengine's parse_losses)."""
    terms = []
    for name, value in losses.items():
        if "loss" not in name:
            continue
        if isinstance(value, torch.Tensor):
            terms.append(value.mean())
        elif isinstance(value, (list, tuple)):
            terms.append(sum(item.mean() for item in value))
        else:
            raise TypeError(f"{name} is not a tensor or a list of tensors")
    return terms


def _refuse_unsupported(wrapper: Any) -> None:
    name = type(loss_list_optimizer(wrapper.optimizer)).__name__
    if getattr(wrapper, "_accumulative_counts", 1) > 1:
        raise OptimizerConfigError(
            f"must be 1 for {name}: its pc_backward zeroes the gradients before each loss term, so nothing "
            "accumulates over micro-batches; use a larger batch instead", f"{WRAPPER_KEY}.accumulative_counts")
    if getattr(wrapper, "loss_scaler", None) is not None:
        raise OptimizerConfigError(
            f"float16 needs a GradScaler, which {name}'s pc_backward does not apply to each loss term; use "
            "dtype='bfloat16' or float32", f"{WRAPPER_KEY}.dtype")


def drive(wrapper: Any, model: nn.Module, data: Any) -> dict:
    """Forward once, back-propagate each loss term through ``pc_backward``, step through the wrapper."""
    _refuse_unsupported(wrapper)
    batch = preprocess(model, data)
    forward = forward_losses(model, batch, wrapper)
    terms = loss_terms(forward.losses)
    wrapper.record_loss(forward.loss)  # the guard skips the step when the total (any term) is not finite
    loss_list_optimizer(wrapper.optimizer).pc_backward(terms)
    wrapper._inner_count += 1  # one iteration, as wrapper.backward counts it
    if wrapper.should_update():
        wrapper.step()
        wrapper.zero_grad()
    return forward.log_vars


register_driver("loss_list", lambda optimizer: loss_list_optimizer(optimizer) is not None, drive)
