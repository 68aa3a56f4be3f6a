"""The driver of optimizers that update inside backward (LOMO, AdaLOMO): ``fused_backward(loss, lr)``.

LOMO's idea (Lv et al., 2023) is to apply each parameter's update from a
gradient hook as soon as its gradient exists and then drop the gradient, so a
whole model's gradients are never held at once. Their API replaces
``backward(); step()`` with ``optimizer.fused_backward(loss, lr)`` (``step()``
does nothing); with gradient-norm clipping a first pass,
``optimizer.grad_norm(loss)``, gathers the norms (``retain_graph=True``) and
the second applies the clipped update. This driver runs that iteration:
forward, losses, then the optimizer's own passes, with ``lr`` read from
``param_groups[0]['lr']`` so mmengine's param schedulers (warmup, cosine) set it.

The non-finite guard, adapted to an update that happens during backward:

* a non-finite loss skips the iteration *before* any backward runs, so
  parameters and optimizer state stay bit-identical (it is counted, logged and
  limited by ``max_nonfinite_steps`` as every skip is);
* with clipping by norm (``clip_grad=dict(max_norm=...)``, handed to the
  optimizer's ``clip_grad_norm``), the first pass's total norm is checked: a
  non-finite one skips the update pass, again with nothing changed;
* without clipping, nothing sees the gradients before they are applied. LOMO
  itself (pytorch-optimizer's, lomo-optim's in float16) drops the update of a
  tensor whose gradient overflows; AdaLOMO applies it. visdet then checks the
  parameters after the update (one fused max-abs pass) and stops training with
  ``NonFiniteTrainingError`` if one became non-finite, rather than go on
  from NaN weights; use ``clip_grad`` to have such a step skipped instead.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from visdet.engine.optim.build.model_argument import updates_in_backward
from visdet.engine.optim.wrappers.nonfinite import GRADS, LOSS, NonFiniteTrainingError
from visdet.engine.optim.wrappers.train_step import forward_losses, preprocess, register_driver

NAME = "fused_backward"


def _clips_by_norm(optimizer: torch.optim.Optimizer) -> bool:
    norm = getattr(optimizer, "clip_grad_norm", None)
    return norm is not None and norm > 0


def _total_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """The 2-norm of all gradients from the first pass's per-tensor norms (a list, or lomo-optim's stacked tensor)."""
    norms = getattr(optimizer, "grad_norms", None)
    if norms is None or len(norms) == 0:
        return None
    stacked = norms if torch.is_tensor(norms) else torch.stack(list(norms))
    return torch.linalg.vector_norm(stacked.float(), 2.0)


def _parameters_finite(optimizer: torch.optim.Optimizer) -> bool:
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(params, norm_type=float("inf"))))


def drive(wrapper: Any, model: torch.nn.Module, data: Any) -> dict:
    """One iteration: forward, then the optimizer's (clipping and) fused update pass; the guard as above."""
    optimizer = wrapper.optimizer
    batch = preprocess(model, data)
    forward = forward_losses(model, batch, wrapper)
    wrapper._inner_count += 1  # mmengine's count of update calls (its backward() would add it)
    loss_value = float(forward.loss.detach())  # the one host sync before backward
    if not math.isfinite(loss_value):
        wrapper._skip(LOSS, loss_value)  # nothing has run backward: parameters and state unchanged
        return forward.log_vars
    if _clips_by_norm(optimizer):
        optimizer.grad_norm(forward.loss)  # gathers the norms only; the graph is kept for the update pass
        norm = _total_norm(optimizer)
        if norm is not None:
            norm_value = float(norm)
            wrapper.message_hub.update_scalar("train/grad_norm", norm_value)
            if not math.isfinite(norm_value):
                optimizer.clip_coef = None
                wrapper._skip(GRADS, loss_value)
                return forward.log_vars
    optimizer.fused_backward(forward.loss, optimizer.param_groups[0]["lr"])
    if not _clips_by_norm(optimizer) and not _parameters_finite(optimizer):
        raise NonFiniteTrainingError(
            f"{type(optimizer).__name__} applied a non-finite gradient inside backward (the loss, {loss_value:.4g}, "
            "was finite): the parameters are no longer finite, so training stopped. Set "
            "optim_wrapper.clip_grad=dict(max_norm=...) so visdet checks the gradients before they are applied "
            "(and skips such a step), or lower the learning rate.",
            consecutive=wrapper.consecutive_nonfinite, total=wrapper.nonfinite_skips)
    wrapper._applied(loss_value)
    return forward.log_vars


register_driver(NAME, updates_in_backward, drive)
