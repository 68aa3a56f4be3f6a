"""What the non-finite guard's tests share: a batch and its loss, a wrapper on an AdamW, a poisoned gradient."""
from __future__ import annotations

import torch
from torch import nn

from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper


NAN = float("nan")


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)


def loss_of(model: nn.Module, seed: int = 0) -> torch.Tensor:
    x, y = batch(seed)
    return nn.functional.cross_entropy(model(x).float(), y)


def make(model: nn.Module, wrapper_cls: type = OptimWrapper, **kwargs) -> OptimWrapper:
    return wrapper_cls(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), **kwargs)


def poison_grad(param: torch.Tensor) -> torch.utils.hooks.RemovableHandle:
    """Make ``param``'s gradient non-finite (inf where it is non-zero, NaN where zero)."""
    return param.register_hook(lambda grad: grad * float("inf"))
