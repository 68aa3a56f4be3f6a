"""Facts about ``nn.Module`` trees: which layers normalize, and every parameter with the module that owns it.

Both the paramwise rules (``norm_decay_mult``) and the Muon routing ask "is
this parameter a norm layer's?" and "which module owns it?"; they share the
answers here so that the two can never disagree.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from torch import nn

__all__ = ["NORM_TYPES", "ModuleParameter", "module_parameters", "walk_modules"]

#: Normalization layers: batch, instance and sync-batch norms (``_NormBase``),
#: group, layer, local-response and (torch >= 2.4) RMS norms.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


class ModuleParameter(NamedTuple):
    """One parameter where a walk of the module tree meets it."""

    name: str  # dotted name, as in ``model.named_parameters()``
    local: str  # its name inside ``module`` ('weight', 'bias', ...)
    param: nn.Parameter
    module: nn.Module  # the module that holds it directly
    prefix: str  # ``module``'s dotted name ('' for the root)
    parent: nn.Module | None  # ``module``'s parent (None for the root)


def walk_modules(
    module: nn.Module, prefix: str = "", parent: nn.Module | None = None
) -> Iterator[tuple[str, nn.Module, nn.Module | None]]:
    """Every ``(dotted name, module, parent)``, pre-order; a module reachable twice is visited twice.

    The repeats are what mmengine's optimizer constructor sees (it recurses
    over ``named_children``); ``model.named_modules()`` drops them.
    """
    yield prefix, module, parent
    for child_name, child in module.named_children():
        yield from walk_modules(child, f"{prefix}.{child_name}" if prefix else child_name, module)


def module_parameters(model: nn.Module, *, remove_duplicate: bool = True) -> Iterator[ModuleParameter]:
    """Every parameter of ``model`` with the module that owns it.

    With ``remove_duplicate`` (the default) the names and order are exactly
    ``model.named_parameters()``'s; without it, a shared parameter (or module)
    comes once per place it is reachable from, as mmengine's constructor visits it.
    """
    seen: set[int] = set()
    for prefix, module, parent in walk_modules(model):
        for local, param in module.named_parameters(recurse=False):
            if remove_duplicate:
                if id(param) in seen:
                    continue
                seen.add(id(param))
            yield ModuleParameter(f"{prefix}.{local}" if prefix else local, local, param, module, prefix, parent)
