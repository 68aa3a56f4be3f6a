"""What a callable accepts by keyword, read from its signature and, for ``**kwargs``, its source.

Python reports an unknown keyword only when the callable is called, and a
class taking ``**kwargs`` swallows it. Config checks need the set up front:
``accepted_keywords`` reads ``__init__``'s signature; when it takes
``**kwargs``, its source is read: keys it reads (``kwargs['x']``,
``kwargs.get('x')``, ``kwargs.pop('x')``) are accepted, and ``**kwargs``
passed on to ``super().__init__`` (or ``Base.__init__``) is followed into the
base class. If it is passed anywhere else, or the source cannot be read, the
set is *open*: the caller should then warn rather than refuse, since nobody
can say honestly that a keyword is wrong.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

@dataclass(frozen=True)
class Keywords:
    """The keyword arguments a callable accepts, as far as can be known.

    Attributes:
        names: Accepted keyword names, in signature order.
        defaults: Default values of those that have one.
        required: Names without a default.
        open: ``**kwargs`` goes somewhere that cannot be followed, so
            ``names`` may be incomplete.
        open_reason: Why the set is open, for the warning.
    """

    names: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    open: bool = False
    open_reason: str = ""

    def __contains__(self, name: object) -> bool:
        return name in self.names


@lru_cache(maxsize=None)
def accepted_keywords(cls: Any, skip_first: bool = True) -> Keywords:
    """What ``cls(...)`` (a class or a function) accepts by keyword; ``skip_first`` drops ``params``."""
    names: list[str] = []
    defaults: dict[str, Any] = {}
    required: list[str] = []
    open_reasons: list[str] = []
    if isinstance(cls, type):
        _collect(cls, skip_first, names, defaults, required, open_reasons, seen=set())
    else:  # a function, e.g. torch.nn.utils.clip_grad_norm_
        _collect_signature(cls, skip_first, names, defaults, required)
    return Keywords(
        names=tuple(names),
        defaults=defaults,
        required=tuple(required),
        open=bool(open_reasons),
        open_reason="; ".join(open_reasons),
    )


def _add_parameter(
    p: inspect.Parameter, names: list[str], defaults: dict[str, Any], required: list[str] | None
) -> None:
    """Record one keyword; ``required`` is None for a base class reached through **kwargs
    (the subclass may pass its required arguments itself)."""
    if p.name in names:
        return
    names.append(p.name)
    # torch.optim's ``required`` sentinel (``lr=required``, timm's SGDP) is a default that means "no default".
    if p.default is not p.empty and type(p.default).__name__ != "_RequiredParameter":
        defaults[p.name] = p.default
    elif required is not None:
        required.append(p.name)


def _collect_signature(
    func: Any, skip_first: bool, names: list[str], defaults: dict[str, Any], required: list[str]
) -> None:
    for i, p in enumerate(inspect.signature(func).parameters.values()):
        if not (skip_first and i == 0) and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            _add_parameter(p, names, defaults, required)


def _defining_class(cls: type) -> type | None:
    """The class in ``cls``'s MRO whose ``__init__`` runs for ``cls()``."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return klass
    return None


def _collect(
    cls: type,
    skip_first: bool,
    names: list[str],
    defaults: dict[str, Any],
    required: list[str],
    open_reasons: list[str],
    seen: set[type],
    mro: tuple[type, ...] | None = None,
) -> None:
    mro = mro or cls.__mro__  # super() in a mixin follows the built class's MRO, not the mixin's
    owner = _defining_class(cls)
    if owner is None or owner is object or owner in seen:
        return
    is_top = not seen  # the class the config names, not a base reached through **kwargs
    seen.add(owner)
    init = vars(owner)["__init__"]
    try:
        params = list(inspect.signature(init).parameters.values())[1:]  # drop self
    except (TypeError, ValueError):
        open_reasons.append(f"{owner.__qualname__}.__init__ has no readable signature")
        return
    var_kw = None
    positional_seen = 0
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            var_kw = p.name
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue
        positional_seen += 1
        if skip_first and positional_seen == 1 and p.kind is p.POSITIONAL_OR_KEYWORD:
            continue  # params / model_params: the constructor passes it
        _add_parameter(p, names, defaults, required if is_top else None)
    if var_kw is None:
        return
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        open_reasons.append(f"{owner.__qualname__}.__init__ takes **{var_kw} and its source cannot be read")
        return
    read, forwarded, unknown = _kwargs_usage(tree, var_kw)
    for key in read:
        if key not in names:
            names.append(key)
    if unknown:
        open_reasons.append(f"{owner.__qualname__}.__init__ passes **{var_kw} on to {unknown}")
    for target in forwarded:
        base = _forward_target(owner, target, mro)
        if base is None:
            open_reasons.append(f"{owner.__qualname__}.__init__ passes **{var_kw} to {target}")
            continue
        _collect(base, skip_first, names, defaults, required, open_reasons, seen, mro)


def _kwargs_usage(tree: ast.AST, var_kw: str) -> tuple[list[str], list[str], str]:
    """Keys read from ``**var_kw``, calls it is forwarded to, and any other use."""
    read: list[str] = []
    forwarded: list[str] = []
    unknown = ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == var_kw
                and func.attr in ("get", "pop", "setdefault")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                read.append(node.args[0].value)
            if any(kw.arg is None and isinstance(kw.value, ast.Name) and kw.value.id == var_kw for kw in node.keywords):
                text = ast.unparse(func)
                if text.endswith("__init__"):
                    forwarded.append(text)
                elif not unknown:
                    unknown = text
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == var_kw
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            read.append(node.slice.value)
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and any(isinstance(c, ast.Name) and c.id == var_kw for c in node.comparators)
        ):
            read.append(node.left.value)
    return read, forwarded, unknown


def _forward_target(owner: type, call: str, mro: tuple[type, ...]) -> type | None:
    """The class whose ``__init__`` a forwarding call from ``owner`` reaches, in the built class's ``mro``."""
    if call.startswith("super("):
        rest = mro[mro.index(owner) + 1:] if owner in mro else owner.__mro__[1:]
        return rest[0] if rest else None
    base_name = call.rsplit(".", 2)[0]
    for base in owner.__mro__[1:]:
        if base.__name__ == base_name:
            return base
    return None
