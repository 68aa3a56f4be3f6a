"""Adaptive gradient clipping (AGC, Brock et al. 2021, "High-Performance Large-Scale Image
Recognition Without Normalization"), the clip function of ``clip_grad=dict(type='agc')``.

For every output unit of a parameter (a row of a linear weight, an output channel of a
conv kernel; a bias or norm vector is one unit) the gradient ``G_i`` is rescaled when

    ||G_i|| / max(||W_i||, eps) > clip_factor    to    G_i * clip_factor * max(||W_i||, eps) / ||G_i||

so a step never moves a unit's weights by more than a fixed fraction of their size. The
maths follow timm's ``adaptive_clip_grad`` (``timm/utils/agc.py``) and Composer's AGC.
Written here because torch has no AGC and timm is no dependency of visdet.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

#: The smallest gradient norm divided by (timm's value): a zero gradient is left alone.
_MIN_GRAD_NORM = 1e-6


def unitwise_norm(tensor: torch.Tensor, norm_type: float = 2.0) -> torch.Tensor:
    """The norm of each output unit (dim 0) of ``tensor``, broadcastable to it; one norm for 0-/1-D tensors."""
    if tensor.ndim <= 1:
        return torch.linalg.vector_norm(tensor, norm_type)
    return torch.linalg.vector_norm(tensor, norm_type, dim=tuple(range(1, tensor.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(
    parameters: Iterable[torch.Tensor], clip_factor: float, eps: float = 1e-3, norm_type: float = 2.0
) -> torch.Tensor | None:
    """Clip the gradients of ``parameters`` unit-wise, in place (the ``clip_grad_norm_`` of AGC).

    Args:
        parameters: Parameters whose ``.grad`` is clipped (those without one are skipped).
        clip_factor: The largest allowed ratio of a unit's gradient norm to its weight norm.
        eps: The smallest weight norm used, so zero-initialised units still train.
        norm_type: The norm of a unit (2: Euclidean, as in the paper).

    Returns:
        The total ``norm_type`` norm of all gradients before clipping (what the
        wrapper logs as ``grad_norm`` and checks for non-finite values), or None
        when no parameter has a gradient.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return None
    grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in params]
    total = torch.nn.utils.get_total_norm(grads, norm_type=norm_type)
    for param, grad in zip(params, grads):
        if grad.is_sparse or param.grad.is_sparse:
            continue  # rows of a sparse gradient are not the parameter's units
        max_norm = unitwise_norm(param.detach().float(), norm_type).clamp(min=eps).mul_(clip_factor)
        grad_norm = unitwise_norm(grad.float(), norm_type)
        scale = torch.where(grad_norm > max_norm, max_norm / grad_norm.clamp(min=_MIN_GRAD_NORM), 1.0)
        grad.mul_(scale.to(grad.dtype))
    return total
