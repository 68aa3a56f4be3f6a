"""The routing policy: which trainable parameters a matrix optimizer (Muon) takes, which the fallback, and why.

``torch.optim.Muon`` takes only 2-D parameters, so a detector cannot be trained
with it alone: :func:`route_parameters` sends hidden layer matrices to the
matrix route and everything else (biases, norms, embeddings, the stem,
prediction heads) to the fallback route, with a reason for each. Its options
come checked from the config layer (``config.optimizer_config``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.hybrid.matrix_views import has_matrix_view
from visdet.utils.modules import NORM_TYPES, module_parameters

__all__ = ["DEFAULT_FALLBACK_KEYS", "FALLBACK", "MATRIX", "Route", "RouteName", "route_parameters"]

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
    fallback_keys: Sequence[str] | None = None,
) -> dict[str, Route]:
    """Decide, for every parameter of ``model``, the matrix or the fallback route.

    Rules, first match wins:

    1. a name matching one of ``fallback_keys`` (a prediction head) -> fallback;
    2. the weight of an ``nn.Embedding``/``nn.EmbeddingBag`` -> fallback;
    3. fewer than 2 dims (biases, norm scales, scalars) -> fallback;
    4. the first conv layer in module order (the stem, the input layer) -> fallback;
    5. a 2-D ``weight``/``*_weight`` -> matrix; any other 2-D tensor (tokens,
       queries, bias tables) -> fallback;
    6. a conv kernel (``weight`` with more than 2 dims) -> matrix when
       ``flatten_conv`` (optimized as ``(out, in * k * k)`` via ``matrix_view``)
       and it is not frozen at build time, else fallback; other N-D tensors
       (position embeddings) -> fallback.

    Args:
        model: The model. Frozen parameters (``requires_grad=False``) are routed
            too: they are in the optimizer, and train once a hook unfreezes them.
        flatten_conv: Route conv kernels to the matrix optimizer, flattened to 2-D.
        fallback_keys: Names of prediction-head modules, as checked by the config
            layer; None for :data:`DEFAULT_FALLBACK_KEYS`.

    Returns:
        Parameter name -> :class:`Route`, in ``model.named_parameters()`` order.

    Raises:
        OptimizerConfigError: a parameter is not initialised yet (a lazy module).
    """
    keys = tuple(tuple(key.split(".")) for key in (DEFAULT_FALLBACK_KEYS if fallback_keys is None else fallback_keys))
    stem = _stem_module(model)
    routes: dict[str, Route] = {}
    for site in module_parameters(model):
        name, param = site.name, site.param
        if nn.parameter.is_lazy(param):
            raise OptimizerConfigError(
                f"parameter '{name}' is not initialised yet (a lazy module); run one forward pass "
                "before building the optimizer"
            )
        route, reason = _decide(name, param, site.module, site.module is stem, flatten_conv, keys)
        routes[name] = Route(name, route, reason, tuple(param.shape))
    return routes


def _matching_key(name: str, keys: tuple[tuple[str, ...], ...]) -> str | None:
    parts = name.split(".")
    for key in keys:
        n = len(key)
        if any(tuple(parts[i:i + n]) == key for i in range(len(parts) - n + 1)):
            return ".".join(key)
    return None


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
        if isinstance(module, NORM_TYPES):
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
    if not param.requires_grad:  # its 2-D view mirrors gradients through a hook torch allows only then
        return FALLBACK, "frozen conv kernel (a 2-D view needs requires_grad=True at build time)"
    if not has_matrix_view(param):
        return FALLBACK, f"conv kernel whose memory layout (strides {tuple(param.stride())}) has no 2-D view"
    flat = param.shape[0], param.numel() // max(param.shape[0], 1)
    return MATRIX, f"conv kernel, optimized as a {flat[0]}x{flat[1]} matrix (flatten_conv=True)"
