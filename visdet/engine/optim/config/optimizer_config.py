"""Read and check one optimizer config dict (``optim_wrapper.optimizer``).

Turns ``dict(type='AdamW', lr=1e-4, ...)`` into the class, its checked
keyword arguments and visdet's own options (the Muon ``fallback``, ZeRO's
``optimizer_type``), or raises ``OptimizerConfigError`` naming the key.
Nothing is built here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.config.arguments import check_keywords, check_required, check_values
from visdet.engine.optim.config.composed_names import expand_composed
from visdet.engine.optim.config.nested_optimizer import Shell, missing_inner_error, nested_keyword, parse_nested
from visdet.utils.signatures import Keywords, accepted_keywords

#: Keys of an optimizer config that visdet consumes instead of the class.
HYBRID_KEYS = ("fallback", "flatten_conv", "fallback_keys")
ZERO_KEYS = ("optimizer_type", "optimizer_class")


@dataclass
class OptimizerConfig:
    """A checked optimizer config.

    Attributes:
        name: The ``type`` as written (a registry name), or the class name.
        cls: The optimizer class.
        kwargs: Keyword arguments for the class (no ``params``).
        keywords: What the class accepts.
        key: Config path of this dict.
        inner: For ZeroRedundancyOptimizer: the sharded optimizer's config.
        fallback: For shape-split optimizers (Muon): the fallback's config.
        flatten_conv: Route conv kernels, flattened to 2-D, to the main optimizer.
        fallback_keys: Name parts that always go to the fallback (prediction heads).
        shells: Optimizers wrapped around this one (Lookahead, SAM...), innermost
            first, from a nested config (``config/nested_optimizer.py``).
    """

    name: str
    cls: type
    kwargs: dict[str, Any]
    keywords: Keywords
    key: str
    inner: OptimizerConfig | None = None
    fallback: OptimizerConfig | None = None
    flatten_conv: bool = False
    fallback_keys: tuple[str, ...] | None = None
    shells: tuple[Shell, ...] = ()

    @property
    def is_hybrid(self) -> bool:
        return self.fallback is not None

    def base(self) -> tuple[float, float | None]:
        """The (lr, weight_decay) that paramwise multipliers scale.

        The weight decay is the configured one only (None when the config sets
        none), as in mmengine: decay rules need an explicit weight decay.
        """
        lr = self.kwargs.get("lr", self.keywords.defaults.get("lr"))  # ZeRO's keywords hold the inner defaults
        if lr is None:
            raise OptimizerConfigError(f"{self.name} has no default lr; set lr", self.key)
        return float(lr), self.kwargs.get("weight_decay")


def is_matrix_only(cls: type) -> bool:
    """Whether ``cls`` accepts only 2-D parameters (and so needs a fallback): its record says so (``matrix_only``)."""
    muon = getattr(torch.optim, "Muon", None)
    if bool(getattr(cls, "visdet_matrix_only", False)) or (muon is not None and issubclass(cls, muon)):
        return True
    spec = spec_for_class(cls)
    return spec is not None and spec.matrix_only


def _zero_class() -> type | None:
    try:
        from torch.distributed.optim import ZeroRedundancyOptimizer
    except ImportError:  # torch built without distributed
        return None
    return ZeroRedundancyOptimizer


def _resolve_type(obj_type: Any, key: str) -> tuple[str, type]:
    from visdet.registry import OPTIMIZERS  # the registry module imports this package

    if isinstance(obj_type, type):
        if not issubclass(obj_type, torch.optim.Optimizer):
            raise OptimizerConfigError(f"{obj_type.__name__} is not a torch.optim.Optimizer", f"{key}.type")
        return obj_type.__name__, obj_type
    if not isinstance(obj_type, str) or not obj_type:
        raise OptimizerConfigError(f"type must be an optimizer name like 'AdamW', got {obj_type!r}", f"{key}.type")
    try:
        OPTIMIZERS.check_buildable(obj_type)
    except OptimizerConfigError as exc:
        raise type(exc)(exc.reason, f"{key}.type") from None
    try:
        cls = OPTIMIZERS.get_in_scope(obj_type)  # the default scope's project registry first, as mmengine's build
    except (ImportError, TypeError, ValueError, RuntimeError):  # mmengine imports '<scope>.registry' for 'scope.Name'
        cls = None
    if cls is None:  # a scoped or dotted name mmengine could not resolve
        raise OptimizerConfigError(
            f"'{obj_type}' could not be found; write a registered name like 'AdamW' or an import path "
            "like 'torch.optim.AdamW'",
            f"{key}.type",
        )
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise OptimizerConfigError(
            f"'{obj_type}' names {cls!r}, not a torch.optim.Optimizer class", f"{key}.type"
        )
    return obj_type, cls


def _check_catalogued_required(cls: type, kwargs: Mapping[str, Any], name: str, key: str) -> None:
    """Keywords the catalogue says a config must set although the signature has a default for them."""
    spec = spec_for_class(cls)
    missing = [k for k in (spec.required if spec is not None else ()) if k not in kwargs]
    if missing:
        raise OptimizerConfigError(
            f"{name} needs {', '.join(missing)} set in the config: its default does not work over parameter "
            f"groups ({spec.notes})", f"{key}.{missing[0]}")


def _expand_alias(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """An alias type (``'adamw_torch_fused'``) as its target and defaults, so the checks see both."""
    from visdet.registry import OPTIMIZERS  # the registry module imports this package

    cfg = expand_composed(cfg, key, lambda name: name in OPTIMIZERS.module_dict)  # timm's lookahead_<name>
    return OPTIMIZERS.expand_alias(cfg, key)


def parse_optimizer_cfg(cfg: Any, key: str = "optim_wrapper.optimizer", allow_hybrid: bool = True) -> OptimizerConfig:
    """Check an optimizer config dict against the class it names.

    Raises:
        OptimizerConfigError: unknown or unavailable type, unknown keyword,
            missing required keyword, or a bad value; the message names the key.
    """
    if not isinstance(cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(type='AdamW', lr=1e-4), got {cfg!r}", key)
    if "type" not in cfg:
        raise OptimizerConfigError("has no 'type'; add e.g. type='AdamW'", key)
    written = cfg["type"]
    cfg = _expand_alias(cfg, key)
    name, cls = _resolve_type(cfg["type"], key)
    if isinstance(written, str) and written != cfg["type"]:
        name = f"{name} (alias '{written}')"  # messages name both
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    zero = _zero_class()
    if zero is not None and issubclass(cls, zero):
        return _parse_zero(name, cls, kwargs, key)
    if nested_keyword(cls, kwargs) is not None or missing_inner_error(name, cls, kwargs, key) is not None:
        return _parse_wrapper(name, cls, kwargs, key, allow_hybrid)

    options = {k: kwargs.pop(k) for k in HYBRID_KEYS if k in kwargs}
    keywords = accepted_keywords(cls)
    check_keywords(kwargs, keywords, name, key, extra=("type", *HYBRID_KEYS) if allow_hybrid else ("type",))
    check_required(kwargs, keywords, name, key)
    _check_catalogued_required(cls, kwargs, name, key)
    check_values(kwargs, keywords, name, key)
    parsed = OptimizerConfig(name=name, cls=cls, kwargs=kwargs, keywords=keywords, key=key)
    if options and not allow_hybrid:
        raise OptimizerConfigError(f"a fallback optimizer cannot itself have {', '.join(options)}", key)
    if options or is_matrix_only(cls):
        _parse_hybrid(parsed, options)
    return parsed


def _parse_wrapper(name: str, cls: type, kwargs: dict[str, Any], key: str, allow_hybrid: bool) -> OptimizerConfig:
    """An optimizer that wraps another (Lookahead, SAM): only at the top of a config or nested in another."""
    keyword = nested_keyword(cls, kwargs)
    if keyword is None:
        raise missing_inner_error(name, cls, kwargs, key)  # type: ignore[misc]
    if not allow_hybrid:
        raise OptimizerConfigError(
            f"{name} wraps another optimizer, so it cannot be a fallback, ZeRO's optimizer_type or a per-module "
            "optimizer; make it optim_wrapper.optimizer itself", f"{key}.type")
    return parse_nested(name, cls, kwargs, key, keyword, parse_optimizer_cfg)


def default_fallback(parsed: OptimizerConfig) -> dict[str, Any]:
    """AdamW for the parameters a matrix optimizer cannot take, when the config names none.

    Weight decay: the main optimizer's. Learning rate: the main one's when
    its updates are scaled to AdamW's RMS (Muon with
    ``adjust_lr_fn='match_rms_adamw'``, where one lr serves both, as in
    Moonlight); otherwise AdamW's own default, since Muon's original scaling
    wants an lr (~0.02) far above what AdamW tolerates.
    """
    fallback: dict[str, Any] = {"type": "AdamW"}
    weight_decay = parsed.kwargs.get("weight_decay", parsed.keywords.defaults.get("weight_decay"))
    if weight_decay is not None:
        fallback["weight_decay"] = weight_decay
    if parsed.kwargs.get("adjust_lr_fn") == "match_rms_adamw":
        lr = parsed.kwargs.get("lr", parsed.keywords.defaults.get("lr"))
        if lr is not None:
            fallback["lr"] = lr
    return fallback


def _parse_hybrid(parsed: OptimizerConfig, options: dict[str, Any]) -> None:
    key = parsed.key
    flatten = options.get("flatten_conv", False)
    if not isinstance(flatten, bool):
        raise OptimizerConfigError(f"flatten_conv must be True or False, got {flatten!r}", f"{key}.flatten_conv")
    fallback_keys = _parse_fallback_keys(options.get("fallback_keys"), f"{key}.fallback_keys")
    fallback_cfg = options.get("fallback")
    if fallback_cfg is None:
        fallback_cfg = default_fallback(parsed)
    parsed.fallback = parse_optimizer_cfg(fallback_cfg, f"{key}.fallback", allow_hybrid=False)
    if parsed.fallback.is_hybrid:
        raise OptimizerConfigError(
            f"{parsed.fallback.name} takes only matrices, so it cannot be the fallback, which gets every "
            "parameter that is not a matrix; use e.g. fallback=dict(type='AdamW')",
            f"{key}.fallback.type",
        )
    parsed.flatten_conv = flatten
    parsed.fallback_keys = fallback_keys


def _parse_fallback_keys(value: Any, key: str) -> tuple[str, ...] | None:
    """``fallback_keys``: None (the routing's defaults) or module names, with dots at their ends dropped.

    The only check of these names: ``hybrid.routing`` matches them as given.
    """
    if value is None:
        return None
    expected = "fallback_keys must be a list of parameter-name parts like ['fc_cls']"
    if isinstance(value, str):
        raise OptimizerConfigError(f"{expected}, got the string {value!r}; write [{value!r}]", key)
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) and k.strip(".").strip() for k in value):
        raise OptimizerConfigError(f"{expected}, got {value!r}", key)
    return tuple(k.strip(".") for k in value)


def _parse_zero(name: str, cls: type, kwargs: dict[str, Any], key: str) -> OptimizerConfig:
    """ZeroRedundancyOptimizer: its ``optimizer_type`` comes from visdet's registry.

    mmengine resolves ``optimizer_type`` in torch.optim only; here any
    registered optimizer can be sharded, and the remaining keywords are
    checked against that optimizer. torch's class is built as visdet's
    subclass, whose ``state_dict()`` consolidates (``config/zero_redundancy.py``).
    """
    given = [k for k in ZERO_KEYS if k in kwargs]
    if not given:
        raise OptimizerConfigError(
            "needs optimizer_type, the optimizer to shard, e.g. optimizer_type='AdamW'", key
        )
    if len(given) > 1:
        raise OptimizerConfigError("give optimizer_type or optimizer_class, not both", key)
    inner_type = kwargs.pop(given[0])
    own = accepted_keywords(cls)
    own_names = tuple(n for n in own.names if n not in ("optimizer_class",))
    zero_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in own_names}
    inner = parse_optimizer_cfg({"type": inner_type, **kwargs}, f"{key}.{given[0]}", allow_hybrid=False)
    if inner.is_hybrid:
        raise OptimizerConfigError(f"{inner.name} needs a fallback and cannot be sharded", f"{key}.{given[0]}")
    keywords = Keywords(
        names=(*own_names, *inner.keywords.names),
        defaults={**inner.keywords.defaults, **own.defaults},
    )
    # Imported here: torch.distributed.optim costs noticeably more to import than the rest.
    from visdet.engine.optim.config.zero_redundancy import ZeroRedundancyOptimizer

    if cls is _zero_class():  # torch's own: visdet's subclass gathers the shards in state_dict()
        cls = ZeroRedundancyOptimizer
    return OptimizerConfig(
        name=name, cls=cls, kwargs={**zero_kwargs, **inner.kwargs}, keywords=keywords, key=key, inner=inner
    )
