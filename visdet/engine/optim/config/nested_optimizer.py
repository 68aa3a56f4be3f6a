"""Optimizers that wrap another, configured by nesting the inner optimizer's config.

``dict(type='Lookahead', k=6, optimizer=dict(type='AdamW', lr=2e-4))`` or
``dict(type='SAM', rho=0.05, base_optimizer=dict(type='SGD', lr=0.02))``: the
inner config sits under the keyword the outer class's ``__init__`` takes it by
(``optimizer`` or ``base_optimizer``, :data:`NESTED_KEYWORDS`). This module reads
such a config. The inner one is checked like any optimizer config, under its own
key path (``optim_wrapper.optimizer.optimizer.lr``); the outer's keywords are
checked against the outer's signature as a closed set (its ``**kwargs`` would
go to the inner optimizer, which has its own config). The result is the
*innermost* optimizer's config, which the constructor plans parameter groups
for (paramwise rules, fused/foreach, Muon's fallback apply to it), carrying the
wrappers around it as :class:`Shell` records, innermost first; the build layer
(``build/nested_optimizer.py``) puts them around the built optimizer.

How an outer class takes its inner optimizer is read from its signature, never
from a list of names: an argument annotated ``type[Optimizer]`` gets the inner
class and builds the inner optimizer itself from its own groups (SAM, WSAM,
LookSAM, FriendlySAM); any other gets the built instance (Lookahead, OrthoGrad,
TRAC, ScheduleFreeWrapper, PCGrad, GSAM). A ``params`` argument gets the
parameter groups, a ``model`` argument the model (visdet passes both).
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visdet.engine.optim.catalog.availability import MET_BY_ARGUMENT
from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.catalog.spec import Need
from visdet.engine.optim.config.arguments import check_keywords, check_required, check_values
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import Keywords, accepted_keywords

#: The keywords under which an outer optimizer takes the one it wraps.
NESTED_KEYWORDS: tuple[str, ...] = MET_BY_ARGUMENT[Need.BASE_OPTIMIZER]
#: Arguments visdet passes to a wrapper itself; a config cannot set them.
PASSED = ("params", "model")


@dataclass(frozen=True)
class Shell:
    """One wrapper around an optimizer, as the config gives it.

    Attributes:
        name: The ``type`` as written (with its alias when it was one).
        cls: The wrapper's class.
        kwargs: Its own keyword arguments, checked.
        keyword: The argument that takes the inner optimizer.
        takes_class: It builds the inner optimizer itself from its class and
            the inner keywords (SAM); otherwise it wraps a built instance.
        takes_params: It also takes the parameter groups (SAM, GSAM, WSAM).
        takes_model: It takes the model (GSAM, WSAM).
        key: The config path of this wrapper's dict.
    """

    name: str
    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    keyword: str = "optimizer"
    takes_class: bool = False
    takes_params: bool = False
    takes_model: bool = False
    key: str = ""


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def nested_keyword(cls: type, cfg: Mapping[str, Any]) -> str | None:
    """The keyword under which ``cfg`` nests an inner optimizer config for ``cls``, or None."""
    parameters = _init_parameters(cls)
    for keyword in NESTED_KEYWORDS:
        if keyword in parameters and isinstance(cfg.get(keyword), Mapping):
            return keyword
    return None


def wrapped_keyword(cls: type) -> str | None:
    """The keyword by which ``cls`` takes another optimizer (its signature names one), or None."""
    parameters = _init_parameters(cls)
    return next((k for k in NESTED_KEYWORDS if k in parameters), None)


def _takes_class(cls: type, keyword: str) -> bool:
    """Whether ``keyword`` is annotated as a class only (``type[Optimizer]``), not an instance."""
    try:
        hint = typing.get_type_hints(cls.__init__).get(keyword)
    except Exception:  # noqa: BLE001  (unresolvable annotations: assume the common case, an instance)
        return False
    return typing.get_origin(hint) is type


def outer_keywords(cls: type, keyword: str) -> Keywords:
    """The wrapper's own keywords: its signature without the inner optimizer, ``params`` and ``model``.

    Closed even when the class takes ``**kwargs``: those go to the inner
    optimizer, whose keywords belong in its own nested config.
    """
    full = accepted_keywords(cls, skip_first=False)
    drop = {keyword, *PASSED}
    names = tuple(n for n in full.names if n not in drop)
    return Keywords(
        names=names,
        defaults={k: v for k, v in full.defaults.items() if k in names},
        required=tuple(n for n in full.required if n not in drop),
    )


def parse_nested(
    name: str, cls: type, kwargs: dict[str, Any], key: str, keyword: str, parse: Callable[[Any, str], Any]
) -> Any:
    """Check a wrapper's config and its nested one; the innermost config with the wrapper as a shell.

    Args:
        name: The wrapper's ``type`` as written.
        cls: The wrapper class.
        kwargs: The wrapper's config without ``type``.
        key: The wrapper's config path.
        keyword: The key of the nested optimizer config.
        parse: ``parse_optimizer_cfg``, for the nested config.

    Raises:
        OptimizerConfigError: a bad keyword of either, or a nesting that cannot be built.
    """
    kwargs = dict(kwargs)
    inner_cfg = kwargs.pop(keyword)
    inner_key = f"{key}.{keyword}"
    own = outer_keywords(cls, keyword)
    for passed in PASSED:
        if passed in kwargs:
            raise OptimizerConfigError(f"{name} gets {passed} from visdet; remove it from the config",
                                       f"{key}.{passed}")
    inner = parse(inner_cfg, inner_key)
    inner_owned = [k for k in kwargs if k not in own.names and k in inner.keywords.names]
    if inner_owned:
        first = inner_owned[0]
        raise OptimizerConfigError(
            f"{name} has no argument '{first}': the optimizer it wraps takes it; set it in "
            f"{inner_key} (e.g. {keyword}=dict(type={inner_cfg.get('type')!r}, {first}=...))\n"
            f"{name}'s own arguments: {', '.join(own.names) or '(none)'}",
            f"{key}.{first}",
        )
    check_keywords(kwargs, own, name, key, extra=("type",))
    check_required(kwargs, own, name, key)
    check_values(kwargs, own, name, key)
    takes_class = _takes_class(cls, keyword)
    if takes_class and (inner.shells or inner.is_hybrid or inner.inner is not None):
        raise OptimizerConfigError(
            f"{name} builds the optimizer it wraps itself, from one optimizer class and its keywords, so "
            f"{inner.shells[-1].name if inner.shells else inner.name} cannot be its {keyword}: put the other "
            f"wrapper outside, e.g. dict(type='Lookahead', optimizer=dict(type={name!r}, {keyword}=dict(type='SGD')))",
            f"{inner_key}.type",
        )
    spec = spec_for_class(inner.cls)
    inner_first = next(iter(list(_init_parameters(inner.cls))[1:]), None)
    if (spec is not None and spec.layout) or inner_first == "model":  # built by their own paths, which skip shells
        raise OptimizerConfigError(
            f"{name} cannot wrap {inner.name} yet: visdet builds it its own way ("
            f"{'its use_muon groups' if inner_first != 'model' else 'over the model'}), not as a wrapped optimizer; "
            f"use {inner.name} alone", f"{inner_key}.type")
    parameters = _init_parameters(cls)
    lr = inner.kwargs.get("lr", inner.keywords.defaults.get("lr"))
    if "lr" in own.names and "lr" not in kwargs and lr is not None:
        kwargs["lr"] = lr  # an outer lr, if it has one, is the inner one
    shell = Shell(
        name=name, cls=cls, kwargs=kwargs, keyword=keyword, takes_class=takes_class,
        takes_params="params" in parameters, takes_model="model" in parameters, key=key,
    )
    inner.shells = (*inner.shells, shell)
    return inner


def missing_inner_error(name: str, cls: type, cfg: Mapping[str, Any], key: str) -> OptimizerConfigError | None:
    """The error for a wrapper whose config does not nest the optimizer it wraps; None when it does."""
    keyword = wrapped_keyword(cls)
    if keyword is None:
        return None
    value = cfg.get(keyword)
    if isinstance(value, Mapping):
        return None
    got = "has none" if value is None else f"got {value!r}"
    return OptimizerConfigError(
        f"{name} wraps another optimizer: nest its config as {keyword}=dict(type='AdamW', lr=1e-4) "
        f"({keyword} {got})",
        f"{key}.{keyword}",
    )
