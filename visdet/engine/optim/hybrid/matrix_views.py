"""2-D views of N-D parameters (conv kernels), so that a matrix-only optimizer such as Muon can step them.

A view shares the kernel's memory and mirrors its gradient, so the optimizer
updates the kernel in place and clipping the view's gradient clips the kernel's.
"""
from __future__ import annotations

import weakref

import torch

__all__ = ["has_matrix_view", "matrix_view"]


def _matrix_order(tensor: torch.Tensor) -> tuple[int, ...]:
    """Dim 0 first, then the other dims outermost-in-memory first, so that a view exists."""
    strides = tensor.stride()
    return (0, *sorted(range(1, tensor.ndim), key=lambda d: -strides[d]))


def _as_matrix(tensor: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` as ``(shape[0], -1)``; a view (raises RuntimeError when impossible)."""
    return tensor.permute(order).view(tensor.shape[0], -1)


def matrix_view(param: torch.Tensor) -> torch.Tensor:
    """A 2-D leaf tensor that shares storage with an N-D ``param`` (N > 2) and mirrors its gradient.

    The view has shape ``(param.shape[0], -1)`` (the columns follow the kernel's
    memory order, so channels-last kernels work too), ``requires_grad=True``, and
    after every backward a hook sets ``view.grad`` to ``param.grad`` seen as a
    matrix (a view of it when the layouts allow, which they do for gradients
    autograd creates). So an optimizer given the view updates ``param`` in place,
    gradient accumulation sums, and clipping ``view.grad`` clips ``param.grad``.

    ``zero_grad`` must clear ``param.grad`` too (:class:`HybridOptimizer` does, given
    ``views``), or the next backward adds to the stale gradient. Build the view
    after the model has been moved to its device and dtype: moving replaces the
    parameter's storage, and the next backward then raises.

    Raises:
        ValueError: ``param`` has 2 dims or fewer, is not a leaf, or does not require grad.
    """
    if param.ndim <= 2:
        raise ValueError(f"matrix_view needs a parameter with more than 2 dims, got shape {tuple(param.shape)}")
    if not param.is_leaf or not param.requires_grad:
        raise ValueError("matrix_view needs a leaf parameter with requires_grad=True")
    order = _matrix_order(param)
    try:
        view = _as_matrix(param.detach(), order)
    except RuntimeError as exc:
        raise ValueError(
            f"a parameter of shape {tuple(param.shape)} and strides {param.stride()} has no 2-D view; "
            "make it contiguous before building the optimizer"
        ) from exc
    view.requires_grad_(True)
    view_ref = weakref.ref(view)
    data_ptr = view.data_ptr()

    def mirror_grad(p: torch.Tensor) -> None:
        v = view_ref()
        if v is None or p.grad is None:
            return
        if p.data_ptr() != data_ptr:
            raise RuntimeError(
                f"a parameter of shape {tuple(p.shape)} no longer shares memory with the 2-D view its optimizer "
                "steps (it was moved to another device or dtype, or its .data replaced, after the optimizer was "
                "built); build the optimizer after moving the model"
            )
        v.grad = p.grad.permute(order).reshape(v.shape)

    handle = param.register_post_accumulate_grad_hook(mirror_grad)
    weakref.finalize(view, handle.remove)
    return view

def has_matrix_view(param: torch.Tensor) -> bool:
    """Whether :func:`matrix_view` can view ``param`` (its memory layout allows a 2-D view)."""
    try:
        _as_matrix(param.detach(), _matrix_order(param))
    except RuntimeError:
        return False
    return True
