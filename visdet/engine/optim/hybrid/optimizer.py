"""``HybridOptimizer``: several optimizers over disjoint parameters behind one ``torch.optim.Optimizer``.

Schedulers, gradient clipping and checkpoints treat it like any other
optimizer. Pure torch: the constructor decides the routes
(``hybrid.routing``), builds the sub-optimizers and passes them in.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from visdet.utils.suggestions import suggestion_text

__all__ = ["HybridOptimizer"]


class _MergedState(Mapping[torch.Tensor, dict]):
    """The sub-optimizers' ``state`` as one read-through mapping (values are the same dicts)."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self._optimizers = optimizers

    def __getitem__(self, param: torch.Tensor) -> dict:
        for opt in self._optimizers.values():
            if param in opt.state:
                return opt.state[param]
        for opt in self._optimizers.values():
            if any(p is param for g in opt.param_groups for p in g["params"]):
                return opt.state[param]  # a defaultdict: an empty state, as torch's own
        raise KeyError("tensor is not optimized by this HybridOptimizer")

    def __iter__(self) -> Iterator[torch.Tensor]:
        for opt in self._optimizers.values():
            yield from opt.state

    def __len__(self) -> int:
        return sum(len(opt.state) for opt in self._optimizers.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} tensors with state)"


class HybridOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters behind one ``torch.optim.Optimizer``.

    ``param_groups`` is the concatenation of the sub-optimizers' groups (the same
    dict objects, so a scheduler setting ``group['lr']`` sets the sub-optimizer's),
    ``state`` is their merged state, ``step`` steps each, and ``state_dict`` keeps
    one entry per route. Step and state-dict hooks work as on any optimizer.

    Args:
        optimizers: Route name (e.g. ``'matrix'``, ``'fallback'``) -> optimizer, in step order.
        views: ``view -> parameter`` for the tensors made by :func:`matrix_view`, so
            that ``zero_grad`` clears the parameters' gradients too.

    Attributes:
        optimizers: The sub-optimizers by route.
        defaults: The sub-optimizers' defaults merged, the first route winning where
            they differ (so ``defaults['lr']`` is the first route's); each route's own
            are at ``optimizers[name].defaults``.
    """

    def __init__(
        self,
        optimizers: Mapping[str, torch.optim.Optimizer],
        views: Mapping[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(optimizers, Mapping) or not optimizers:
            raise ValueError("HybridOptimizer needs a non-empty dict of route name -> optimizer")
        for name, opt in optimizers.items():
            if not isinstance(name, str):
                raise TypeError(f"HybridOptimizer route names must be strings, got {name!r}")
            if not isinstance(opt, torch.optim.Optimizer) or isinstance(opt, HybridOptimizer):
                raise TypeError(f"route '{name}': expected a torch.optim.Optimizer, got {type(opt).__name__}")
        self.optimizers: dict[str, torch.optim.Optimizer] = dict(optimizers)
        self._views: dict[torch.Tensor, torch.Tensor] = dict(views or {})
        self._check_disjoint()
        defaults: dict[str, Any] = {}
        for opt in reversed(self.optimizers.values()):
            defaults.update(opt.defaults)
        self.defaults = defaults
        self._init_hooks()

    def _init_hooks(self) -> None:
        # As torch.optim.Optimizer.__init__ does, without its param-group building.
        self._optimizer_step_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: dict[int, Callable] = OrderedDict()
        self._patch_step_function()  # wraps step() so that step hooks run

    def _owners(self) -> dict[int, str]:
        owner: dict[int, str] = {}
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) in owner:
                        where = f"routes '{owner[id(p)]}' and '{name}'" if owner[id(p)] != name else f"route '{name}'"
                        raise ValueError(f"a tensor of shape {tuple(p.shape)} is optimized twice, by {where}")
                    owner[id(p)] = name
        return owner

    def _check_disjoint(self) -> None:
        owner = self._owners()
        for view, param in self._views.items():
            if id(view) not in owner:
                raise ValueError(f"views: a view of shape {tuple(view.shape)} is in no route's param_groups")
            if id(param) in owner:
                raise ValueError(
                    f"a parameter of shape {tuple(param.shape)} is optimized twice: directly by route "
                    f"'{owner[id(param)]}' and through its 2-D view by route '{owner[id(view)]}'"
                )

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """All sub-optimizers' groups, in route order (the same dicts)."""
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    @property
    def state(self) -> _MergedState:  # type: ignore[override]
        """The sub-optimizers' per-tensor state, merged (read-through)."""
        return _MergedState(self.optimizers)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure`` once (with grad enabled), then step every sub-optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers.values():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every sub-optimizer's tensors and of the parameters behind views."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)
        for param in self._views.values():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                if param.grad.grad_fn is not None:
                    param.grad.detach_()
                else:
                    param.grad.requires_grad_(False)
                param.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """``{'optimizers': {route: sub.state_dict()}}``; loadable with ``torch.load(weights_only=True)``."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state_dict: dict[str, Any] = {"optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()}}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`, route by route, after checking the routes match.

        Raises:
            ValueError: Not a HybridOptimizer state dict, routes missing or unexpected,
                or a route's groups do not match (as torch reports it, with the route).
        """
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("optimizers"), Mapping):
            found = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(
                "HybridOptimizer.load_state_dict expects {'optimizers': {route: state_dict}} as saved by "
                f"HybridOptimizer.state_dict(), got keys {found} (a single optimizer's checkpoint?)"
            )
        saved = state_dict["optimizers"]
        missing = [name for name in self.optimizers if name not in saved]
        unexpected = [name for name in saved if name not in self.optimizers]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing route(s) {', '.join(map(repr, missing))}")
            if unexpected:
                hint = suggestion_text(unexpected[0], missing) if missing else ""
                parts.append(f"unexpected route(s) {', '.join(map(repr, unexpected))}{hint}")
            raise ValueError(
                f"HybridOptimizer.load_state_dict: the checkpoint does not match this optimizer: {'; '.join(parts)}. "
                f"Checkpoint routes: {list(saved)}; this optimizer's routes: {list(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            try:
                opt.load_state_dict(saved[name])
            except ValueError as exc:
                raise ValueError(f"HybridOptimizer.load_state_dict: route '{name}': {exc}") from exc
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the sub-optimizer named by ``param_group['route']``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        routes = list(self.optimizers)
        if "route" not in param_group:
            raise ValueError(
                "HybridOptimizer.add_param_group: the route is ambiguous; say which optimizer takes the group "
                f"with param_group['route'] = one of {routes}"
            )
        group = dict(param_group)
        route = group.pop("route")
        if route not in self.optimizers:
            raise ValueError(
                f"HybridOptimizer.add_param_group: unknown route {route!r}{suggestion_text(str(route), routes)} "
                f"Routes: {routes}"
            )
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        owner = self._owners()
        for p in params:
            if id(p) in owner:
                raise ValueError(
                    f"HybridOptimizer.add_param_group: a tensor of shape {tuple(p.shape)} is already optimized "
                    f"by route '{owner[id(p)]}'"
                )
        group["params"] = params
        self.optimizers[route].add_param_group(group)

    def __getstate__(self) -> dict[str, Any]:
        return {"optimizers": self.optimizers, "_views": self._views, "defaults": self.defaults}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_hooks()

    def __repr__(self) -> str:
        viewed = {id(v) for v in self._views}
        lines = [f"{type(self).__name__} ("]
        for name, opt in self.optimizers.items():
            params = [p for g in opt.param_groups for p in g["params"]]
            n_views = sum(id(p) in viewed for p in params)
            flat = f", {n_views} of them conv kernels as 2-D views" if n_views else ""
            lines.append(
                f"  route '{name}': {type(opt).__name__}, {len(opt.param_groups)} group(s), "
                f"{len(params)} tensors{flat}, {sum(p.numel() for p in params):,} values"
            )
            lines += ["    " + line for line in repr(opt).splitlines()]
        lines.append(")")
        return "\n".join(lines)
