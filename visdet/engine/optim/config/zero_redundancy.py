"""visdet's ``ZeroRedundancyOptimizer``: torch's, with a ``state_dict()`` that gathers the shards itself.

torch's class (ZeRO stage 1) keeps each process's share of the optimizer state on
that process; its ``state_dict()`` raises "Optimizer state has not been
consolidated" unless every rank called ``consolidate_state_dict()`` first, so
code that saves a checkpoint the ordinary way (``optimizer.state_dict()`` on
every rank, as mmengine's own subclass and its tests expect) fails with it.
This subclass consolidates inside ``state_dict()`` (a collective: call it on
every rank), returns the full state on the rank it was gathered to and ``{}``
elsewhere, as mmengine's does. A consolidation made beforehand
(``visdet.engine.runner`` and ``ZeroConsolidateHook`` gather on every rank with
:func:`gather_zero_shards`, then rank 0 alone saves) is reused until the next
step or load, so rank 0 alone never starts a collective the other ranks do not
join.

It lives in the config layer because ``parse_optimizer_cfg`` is where a config's
``type`` becomes the class that is built; it imports only torch and, lazily,
``visdet.registry`` (for mmengine's ``optimizer_type`` spelling).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.distributed.optim import ZeroRedundancyOptimizer as TorchZeroRedundancyOptimizer


class ZeroRedundancyOptimizer(TorchZeroRedundancyOptimizer):
    """torch's ``ZeroRedundancyOptimizer`` whose ``state_dict()`` consolidates the shards first.

    Args:
        params: The parameters (or groups) to shard across ranks.
        optimizer_class: The local optimizer class (torch's argument).
        optimizer_type: Or its registry name, as in mmengine (``'AdamW'``),
            resolved in visdet's ``OPTIMIZERS``.
        **kwargs: torch's ``process_group``, ``parameters_as_bucket_view``,
            ``overlap_with_ddp`` and the local optimizer's keywords.
    """

    def __init__(self, params: Any, optimizer_class: type[torch.optim.Optimizer] | None = None,
                 optimizer_type: str | None = None, **kwargs: Any) -> None:
        if (optimizer_class is None) == (optimizer_type is None):
            raise TypeError("ZeroRedundancyOptimizer needs one of optimizer_class or optimizer_type")
        if optimizer_class is None:
            from visdet.registry import OPTIMIZERS  # the registry module imports this package

            optimizer_class = OPTIMIZERS.get(optimizer_type)
        self._consolidated_to: int | None = None
        super().__init__(params, optimizer_class, **kwargs)

    def consolidate_state_dict(self, to: int = 0) -> None:
        """torch's gather of every rank's shard onto rank ``to`` (a collective), remembered until the next step."""
        super().consolidate_state_dict(to=to)
        self._consolidated_to = to

    def step(self, closure: Any = None, **kwargs: Any) -> Any:
        self._consolidated_to = None  # the gathered state is stale from here on
        return super().step(closure, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._consolidated_to = None
        super().load_state_dict(state_dict)

    def state_dict(self) -> dict[str, Any]:
        """The full optimizer state on the rank it is gathered to (rank 0), ``{}`` on the others.

        Gathers first unless a consolidation since the last step exists; then it
        is a collective, and every rank must call it.
        """
        if getattr(self, "_consolidated_to", None) is None:
            self.consolidate_state_dict(to=0)
        if self.rank != self._consolidated_to:
            return {}
        return super().state_dict()


def gather_zero_shards(optim_wrapper: Any) -> int:
    """Gather each ZeroRedundancyOptimizer's shards onto rank 0; how many were gathered.

    A collective: call it on every rank. ``optim_wrapper`` is an optim wrapper,
    a dict of them (mmengine's ``OptimWrapperDict``) or anything else (nothing
    to gather). visdet's class gathered since its last step is left as it is, so
    two callers before one save (the hook, then visdet's Runner) gather once;
    torch's and mmengine's classes cannot tell, and are gathered every time.
    """
    wrappers = optim_wrapper.values() if hasattr(optim_wrapper, "values") else [optim_wrapper]
    gathered = 0
    for wrapper in wrappers:
        optimizer = getattr(wrapper, "optimizer", None)
        if not isinstance(optimizer, TorchZeroRedundancyOptimizer):
            continue
        if isinstance(optimizer, ZeroRedundancyOptimizer) and optimizer._consolidated_to == 0:
            continue
        optimizer.consolidate_state_dict(to=0)
        gathered += 1
    return gathered
