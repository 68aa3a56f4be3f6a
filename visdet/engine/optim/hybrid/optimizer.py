"""Split-by-shape optimizers: matrices to one optimizer, everything else to another.

``torch.optim.Muon`` takes only 2-D parameters, so a detector cannot be trained
with it alone. This module decides which parameters are hidden matrices
(:func:`route_parameters`), lets a conv kernel be optimized as a matrix without
copying it (:func:`matrix_view`), and puts the sub-optimizers behind one
``torch.optim.Optimizer`` (:class:`HybridOptimizer`) that schedulers, gradient
clipping and checkpoints treat like any other. Pure torch: the constructor
builds the sub-optimizers and passes them in.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError

from visdet.utils.suggestions import suggestion_text

__all__ = [
    "DEFAULT_FALLBACK_KEYS",
    "FALLBACK",
    "MATRIX",
    "HybridOptimizer",
    "Route",
    "format_routes",
    "matrix_view",
    "route_parameters",
]

MATRIX = "matrix"
FALLBACK = "fallback"
RouteName = Literal["matrix", "fallback"]

#: Names of prediction-head modules, whose weights go to the fallback optimizer
#: (Muon's authors keep the output layer on AdamW). A key matches whole
#: dot-separated parts of a parameter's name: ``'head.fc'`` matches
#: ``'head.fc.weight'`` but not ``'roi_head.bbox_head.fcs.0.weight'``.
DEFAULT_FALLBACK_KEYS: tuple[str, ...] = (
    # MMDetection
    "fc_cls", "fc_reg", "conv_cls", "conv_reg", "conv_centerness", "conv_logits",
    "rpn_cls", "rpn_reg", "retina_cls", "retina_reg", "atss_cls", "atss_reg", "atss_centerness",
    "gfl_cls", "gfl_reg", "multi_level_conv_cls", "multi_level_conv_reg", "multi_level_conv_obj",
    "cls_branches", "reg_branches",
    # torchvision detection
    "cls_score", "bbox_pred", "cls_logits", "bbox_reg", "mask_fcn_logits",
    # timm and Hugging Face classifiers
    "head.fc", "head.weight", "classifier", "lm_head", "score", "qa_outputs",
)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


@dataclass(frozen=True)
class Route:
    """Where one trainable parameter goes and why (shown by a dry-run report).

    Attributes:
        name: The parameter's name in ``model.named_parameters()``.
        route: ``'matrix'`` (e.g. Muon) or ``'fallback'`` (e.g. AdamW).
        reason: Why, in words.
        shape: The parameter's shape.
    """

    name: str
    route: RouteName
    reason: str
    shape: tuple[int, ...] = ()


def route_parameters(
    model: nn.Module,
    *,
    flatten_conv: bool = False,
    fallback_keys: Sequence[str] = DEFAULT_FALLBACK_KEYS,
) -> dict[str, Route]:
    """Decide, for every trainable parameter of ``model``, the matrix or the fallback route.

    Rules, first match wins:

    1. a name matching one of ``fallback_keys`` (a prediction head) -> fallback;
    2. the weight of an ``nn.Embedding``/``nn.EmbeddingBag`` -> fallback;
    3. fewer than 2 dims (biases, norm scales, scalars) -> fallback;
    4. the first conv layer in module order (the stem, the input layer) -> fallback;
    5. a 2-D ``weight``/``*_weight`` -> matrix; any other 2-D tensor (tokens,
       queries, bias tables) -> fallback;
    6. a conv kernel (``weight`` with more than 2 dims) -> matrix when
       ``flatten_conv`` (optimized as ``(out, in * k * k)`` via :func:`matrix_view`),
       else fallback; other N-D tensors (position embeddings) -> fallback.

    Args:
        model: The model; parameters with ``requires_grad=False`` are left out.
        flatten_conv: Route conv kernels to the matrix optimizer, flattened to 2-D.
        fallback_keys: Names of prediction-head modules (see :data:`DEFAULT_FALLBACK_KEYS`).

    Returns:
        Parameter name -> :class:`Route`, in ``model.named_parameters()`` order.
    """
    if not isinstance(flatten_conv, bool):
        raise OptimizerConfigError(f"flatten_conv must be True or False, got {flatten_conv!r}")
    keys = _check_fallback_keys(fallback_keys)
    stem = _stem_module(model)
    routes: dict[str, Route] = {}
    for name, param, module in _named_parameters_with_module(model):
        if not param.requires_grad:
            continue
        if nn.parameter.is_lazy(param):
            raise OptimizerConfigError(
                f"parameter '{name}' is not initialised yet (a lazy module); run one forward pass "
                "before building the optimizer"
            )
        route, reason = _decide(name, param, module, module is stem, flatten_conv, keys)
        routes[name] = Route(name, route, reason, tuple(param.shape))
    return routes


def format_routes(routes: Mapping[str, Route]) -> str:
    """A table of parameter, shape, route and reason, with a count per route."""
    if not routes:
        return "(no trainable parameters)"
    rows = [("parameter", "shape", "route", "reason")]
    rows += [(r.name, "x".join(map(str, r.shape)) or "scalar", r.route, r.reason) for r in routes.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    counts = {MATRIX: 0, FALLBACK: 0}
    for r in routes.values():
        counts[r.route] += 1
    lines.append(f"{counts[MATRIX]} tensors -> {MATRIX}, {counts[FALLBACK]} tensors -> {FALLBACK}")
    return "\n".join(lines)


def _check_fallback_keys(fallback_keys: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    if isinstance(fallback_keys, str):
        raise OptimizerConfigError(
            f"fallback_keys must be a list of names, got the string {fallback_keys!r}; write [{fallback_keys!r}]"
        )
    keys = []
    for key in fallback_keys:
        if not isinstance(key, str) or not key.strip(".").strip():
            raise OptimizerConfigError(f"fallback_keys holds {key!r}; each key must be a non-empty module name")
        keys.append(tuple(key.strip(".").split(".")))
    return tuple(keys)


def _matching_key(name: str, keys: tuple[tuple[str, ...], ...]) -> str | None:
    parts = name.split(".")
    for key in keys:
        n = len(key)
        if any(tuple(parts[i:i + n]) == key for i in range(len(parts) - n + 1)):
            return ".".join(key)
    return None


def _named_parameters_with_module(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Module]]:
    """``model.named_parameters()`` (same names, order, de-duplication) with each owner module."""
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            yield (f"{prefix}.{local}" if prefix else local), param, module


def _is_conv_like(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.modules.conv._ConvNd) or (
        isinstance(weight, nn.Parameter) and not nn.parameter.is_lazy(weight) and weight.ndim > 2
    )


def _stem_module(model: nn.Module) -> nn.Module | None:
    """The first conv layer in module order (trainable or not): the network's input layer."""
    return next((m for _, m in model.named_modules() if _is_conv_like(m)), None)


def _decide(
    name: str,
    param: torch.Tensor,
    module: nn.Module,
    is_stem: bool,
    flatten_conv: bool,
    keys: tuple[tuple[str, ...], ...],
) -> tuple[RouteName, str]:
    local = name.rsplit(".", 1)[-1]
    is_weight = local == "weight" or local.endswith("_weight")
    key = _matching_key(name, keys)
    if key is not None:
        return FALLBACK, f"prediction head (matches fallback key '{key}')"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return FALLBACK, "embedding"
    if param.ndim == 0:
        return FALLBACK, "scalar"
    if param.ndim == 1:
        if local == "bias":
            return FALLBACK, "bias"
        if isinstance(module, _NORM_TYPES):
            return FALLBACK, "normalization parameter"
        return FALLBACK, "1-D parameter"
    if is_stem and is_weight:
        return FALLBACK, "first conv layer (the stem, the network's input layer)"
    if param.ndim == 2:
        if is_weight:
            return MATRIX, "2-D weight"
        return FALLBACK, f"2-D parameter '{local}' is not a layer weight (a token, query or table)"
    if not is_weight:
        return FALLBACK, f"{param.ndim}-D parameter '{local}' is not a layer weight"
    if not flatten_conv:
        return FALLBACK, "conv kernel; set flatten_conv=True to route it to Muon"
    try:
        _as_matrix(param.detach(), _matrix_order(param))
    except RuntimeError:
        return FALLBACK, f"conv kernel whose memory layout (strides {tuple(param.stride())}) has no 2-D view"
    flat = param.shape[0], param.numel() // max(param.shape[0], 1)
    return MATRIX, f"conv kernel, optimized as a {flat[0]}x{flat[1]} matrix (flatten_conv=True)"


# --------------------------------------------------------------------------- views


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


# --------------------------------------------------------------------------- optimizer


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

    def route_of_group(self, index: int) -> str:
        """The route name of ``param_groups[index]``."""
        for name, opt in self.optimizers.items():
            if index < len(opt.param_groups):
                return name
            index -= len(opt.param_groups)
        raise IndexError("param group index out of range")

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
