"""Check an optimizer config against the class it names, before building.

Python reports an unknown keyword only when the class is called, as a bare
``TypeError``; ``**kwargs`` classes swallow it; a string where a number
belongs fails at the first step, hours in. Here every keyword is checked
against what the class accepts, with a did-you-mean, and the values whose
meaning is the same in every optimizer (lr, betas, eps, weight decay,
momentum) are range-checked, all raising ``OptimizerConfigError``.

What a class accepts comes from its ``__init__`` signature. When ``__init__``
takes ``**kwargs``, its source is read: keys it reads (``kwargs['x']``,
``kwargs.get('x')``, ``kwargs.pop('x')``) are accepted, and ``**kwargs``
passed on to ``super().__init__`` (or ``Base.__init__``) is followed into the
base class. If it is passed anywhere else, or the source cannot be read, the
set is *open*: unknown keywords are then let through with a warning instead
of an error, since nobody can say honestly that they are wrong.
"""
from __future__ import annotations

import ast
import inspect
import math
import numbers
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from visdet.engine.optim.errors import OptimizerConfigError

from visdet.utils.suggestions import suggestion_text


class OptimizerConfigWarning(UserWarning):
    """A config that builds but probably does not do what its author meant."""


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
    if p.default is not p.empty:
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


#: Spellings from other libraries and papers -> the torch.optim keyword.
SYNONYMS = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "wd": "weight_decay",
    "decay": "weight_decay",
    "weightdecay": "weight_decay",
    "epsilon": "eps",
    "beta1": "betas",
    "beta2": "betas",
    "beta_1": "betas",
    "beta_2": "betas",
    "adam_beta1": "betas",
    "adam_beta2": "betas",
    "adam_epsilon": "eps",
    "momentum": "betas",  # Adam-family: betas[0] is the momentum
}


def _hint(name: str, valid: list[str]) -> str:
    synonym = SYNONYMS.get(name.lower())
    if synonym in valid:
        return f"; did you mean '{synonym}'?"
    return suggestion_text(name, valid)


def check_keywords(
    kwargs: Mapping[str, Any],
    keywords: Keywords,
    owner: str,
    key: str,
    extra: tuple[str, ...] = (),
) -> None:
    """Refuse keywords ``owner`` does not accept, with the closest valid ones.

    Args:
        kwargs: The keywords the config gives.
        keywords: What the class accepts.
        owner: The class name, for the message.
        key: The config path of ``kwargs``.
        extra: Keys visdet itself consumes at this path (``type``...).
    """
    valid = [*extra, *keywords.names]
    unknown = [name for name in kwargs if name not in valid]
    if not unknown:
        return
    if keywords.open:
        warnings.warn(
            f"{key}: {owner} may not use {', '.join(map(repr, unknown))}: it accepts **kwargs "
            f"and visdet cannot see where they go ({keywords.open_reason}).",
            OptimizerConfigWarning,
            stacklevel=3,
        )
        return
    name = unknown[0]
    more = f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else ""
    raise OptimizerConfigError(
        f"{owner} got an unknown argument '{name}'{more}{_hint(name, valid)}\n"
        f"Valid arguments: {', '.join(keywords.names) or '(none)'}",
        key,
    )


def check_required(kwargs: Mapping[str, Any], keywords: Keywords, owner: str, key: str) -> None:
    """Refuse a config that leaves out an argument without a default."""
    missing = [name for name in keywords.required if name not in kwargs]
    if missing:
        raise OptimizerConfigError(f"{owner} needs {', '.join(map(repr, missing))}; add it to the config", key)


# --- values -----------------------------------------------------------------

def is_number(value: Any) -> bool:
    """A real number, not a bool (``True`` is an int to Python, not an lr)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_scalar_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{value!r} ({type(value).__name__})"


def check_number(value: Any, name: str, key: str, *, low: float | None = 0.0, high: float | None = None,
                 high_open: bool = False, allow_tensor: bool = False) -> None:
    """Refuse a value that is not a finite real number in ``[low, high]``."""
    if allow_tensor and _is_scalar_tensor(value):
        value = float(value)
    if not is_number(value):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = f"; write {name}={value} without quotes"
            except ValueError:
                pass
        raise OptimizerConfigError(f"{name} must be a number, got {_describe(value)}{hint}", key)
    if not math.isfinite(value):
        raise OptimizerConfigError(f"{name} must be finite, got {value}", key)
    too_low = low is not None and value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if high is not None and (too_low or too_high):
        bracket = ")" if high_open else "]"
        raise OptimizerConfigError(f"{name} must be in [{low:g}, {high:g}{bracket}, got {value:g}", key)
    if too_low:
        raise OptimizerConfigError(f"{name} must be >= {low:g}, got {value:g}", key)


def _check_betas(value: Any, default: Any, key: str) -> None:
    if not isinstance(value, (tuple, list)):
        raise OptimizerConfigError(f"betas must be a tuple of numbers like (0.9, 0.999), got {_describe(value)}", key)
    if isinstance(default, (tuple, list)) and len(value) != len(default):
        raise OptimizerConfigError(
            f"betas must have {len(default)} values like {tuple(default)}, got {len(value)}: {tuple(value)}", key
        )
    for i, beta in enumerate(value):
        check_number(beta, f"betas[{i}]", key, low=0.0, high=1.0, high_open=True, allow_tensor=True)


#: Checks that mean the same in every optimizer that has the argument.
_RANGE_RULES: dict[str, dict[str, Any]] = {
    "lr": dict(low=0.0, allow_tensor=True),
    "weight_decay": dict(low=0.0),
    "eps": dict(low=0.0),
    "momentum": dict(low=0.0),
    "dampening": dict(low=0.0),
    "beta1": dict(low=0.0, high=1.0, high_open=True),
    "beta2": dict(low=0.0, high=1.0, high_open=True),
    "beta3": dict(low=0.0, high=1.0, high_open=True),
}


#: Counts that must be positive integers wherever they appear: bitsandbytes' ``min_8bit_size``
#: (tensors with fewer values keep 32-bit state); a float or 0 would silently change every tensor's state.
_INT_AT_LEAST_ONE = frozenset({"min_8bit_size"})


def check_values(kwargs: Mapping[str, Any], keywords: Keywords, owner: str, key: str) -> None:
    """Refuse values of the wrong type or out of range, before the class sees them.

    Types are judged by the signature's default (a bool default wants a bool,
    a number default a number, a tuple default a tuple of that length);
    ranges by the table of arguments whose meaning is shared.
    """
    for name, value in kwargs.items():
        path = f"{key}.{name}"
        default = keywords.defaults.get(name, inspect.Parameter.empty)
        if name == "betas":
            _check_betas(value, default, path)
            continue
        if name in _INT_AT_LEAST_ONE:
            check_int_at_least(value, name, path, 1)
            continue
        if name in _RANGE_RULES and (is_number(default) or default is inspect.Parameter.empty or name == "lr"):
            if not (name == "eps" and value is None):
                check_number(value, name, path, **_RANGE_RULES[name])
            continue
        _check_type_like_default(value, default, name, owner, path)


def _check_type_like_default(value: Any, default: Any, name: str, owner: str, key: str) -> None:
    if default is inspect.Parameter.empty or default is None or value is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise OptimizerConfigError(f"{name} must be True or False, got {_describe(value)}", key)
    elif is_number(default):
        if not (is_number(value) or _is_scalar_tensor(value)):
            check_number(value, name, key, low=None)  # raises with the message for numbers
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise OptimizerConfigError(f"{name} must be a string like {default!r}, got {_describe(value)}", key)
    elif isinstance(default, tuple) and default and all(v is None or is_number(v) for v in default):
        # e.g. Rprop etas=(0.5, 1.2); Adafactor eps=(None, 1e-3), where None means "choose for me"
        if not isinstance(value, (tuple, list)) or len(value) != len(default):
            none_ok = " (None where the default has None)" if None in default else ""
            raise OptimizerConfigError(
                f"{name} must be a tuple of {len(default)} numbers like {default}{none_ok}, got {_describe(value)}", key
            )
        for i, item in enumerate(value):
            if not (item is None and default[i] is None):
                check_number(item, f"{name}[{i}]", key, low=None, allow_tensor=True)


def check_int_at_least(value: Any, name: str, key: str, low: int) -> None:
    """Refuse anything but an int ``>= low`` (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptimizerConfigError(f"{name} must be an integer >= {low}, got {_describe(value)}", key)
    if value < low:
        raise OptimizerConfigError(f"{name} must be an integer >= {low}, got {value}", key)


# --- optim_wrapper pieces ---------------------------------------------------

#: Every key of mmengine's DefaultOptimWrapperConstructor ``paramwise_cfg``.
PARAMWISE_MULTS = (
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "dwconv_decay_mult",
    "flat_decay_mult",
    "dcn_offset_lr_mult",
)
PARAMWISE_KEYS = ("custom_keys", *PARAMWISE_MULTS, "bypass_duplicate")
DECAY_MULTS = tuple(k for k in PARAMWISE_MULTS if "decay" in k)
CUSTOM_KEY_MULTS = ("lr_mult", "decay_mult")


def check_paramwise_cfg(
    paramwise_cfg: Any,
    group_keywords: Keywords,
    optimizer_cfg: Mapping[str, Any],
    key: str = "optim_wrapper.paramwise_cfg",
    optimizer_key: str = "optim_wrapper.optimizer",
) -> None:
    """Refuse misspelled keys, bad multipliers, and decay rules without a decay.

    Args:
        paramwise_cfg: The config's ``paramwise_cfg`` (None or a dict).
        group_keywords: What a parameter group may override (the optimizer's
            keywords); ``custom_keys`` entries may set these besides the mults.
        optimizer_cfg: The optimizer config (``weight_decay`` is looked up).
        key: Config path of ``paramwise_cfg``.
        optimizer_key: Config path of ``optimizer_cfg``.
    """
    if paramwise_cfg is None:
        return
    if not isinstance(paramwise_cfg, Mapping):
        raise OptimizerConfigError(f"must be a dict like dict(norm_decay_mult=0.0), got {_describe(paramwise_cfg)}", key)
    for name, value in paramwise_cfg.items():
        if name not in PARAMWISE_KEYS:
            raise OptimizerConfigError(
                f"unknown key '{name}'{suggestion_text(name, PARAMWISE_KEYS)}\nValid keys: {', '.join(PARAMWISE_KEYS)}",
                key,
            )
        if name in PARAMWISE_MULTS:
            check_number(value, name, f"{key}.{name}")
        elif name == "bypass_duplicate" and not isinstance(value, bool):
            raise OptimizerConfigError(f"bypass_duplicate must be True or False, got {_describe(value)}", key)
    has_wd = optimizer_cfg.get("weight_decay") is not None
    decay_keys = [k for k in DECAY_MULTS if k in paramwise_cfg]
    custom_keys = paramwise_cfg.get("custom_keys", {})
    if not isinstance(custom_keys, Mapping):
        raise OptimizerConfigError(
            f"must be a dict of name -> dict(lr_mult=..., decay_mult=...), got {_describe(custom_keys)}",
            f"{key}.custom_keys",
        )
    for pattern, rule in custom_keys.items():
        path = f"{key}.custom_keys[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise OptimizerConfigError(f"keys must be non-empty parts of parameter names, got {pattern!r}", f"{key}.custom_keys")
        if not isinstance(rule, Mapping):
            raise OptimizerConfigError(f"must be a dict like dict(lr_mult=0.1), got {_describe(rule)}", path)
        valid = (*CUSTOM_KEY_MULTS, *group_keywords.names)
        for name, value in rule.items():
            if name in CUSTOM_KEY_MULTS:
                check_number(value, name, f"{path}.{name}")
            elif name not in group_keywords.names:
                raise OptimizerConfigError(
                    f"unknown key '{name}'{suggestion_text(name, valid)}\nValid keys: {', '.join(valid)}", path
                )
        if "decay_mult" in rule:
            decay_keys.append(f"custom_keys[{pattern!r}].decay_mult")
        other = {k: v for k, v in rule.items() if k not in CUSTOM_KEY_MULTS}
        if other:
            check_values(other, group_keywords, "", path)
    if decay_keys and not has_wd:
        default = group_keywords.defaults.get("weight_decay")
        default_text = f" (its default is {default})" if is_number(default) else ""
        raise OptimizerConfigError(
            f"{', '.join(decay_keys)} multiplies the weight decay, but {optimizer_key} "
            f"sets no weight_decay{default_text}; set optimizer weight_decay explicitly or drop the decay multiplier",
            key,
        )


def check_clip_grad(clip_grad: Any, key: str = "optim_wrapper.clip_grad") -> None:
    """Refuse a ``clip_grad`` that mmengine would only reject at the first step."""
    if clip_grad is None:
        return
    if not isinstance(clip_grad, Mapping) or not clip_grad:
        raise OptimizerConfigError(
            f"must be a dict like dict(max_norm=35, norm_type=2) or None, got {_describe(clip_grad)}", key
        )
    kind = clip_grad.get("type", "norm")
    functions = {"norm": torch.nn.utils.clip_grad_norm_, "value": torch.nn.utils.clip_grad_value_}
    if not isinstance(kind, str) or kind not in functions:
        raise OptimizerConfigError(f"type must be 'norm' or 'value', got {kind!r}", f"{key}.type")
    keywords = accepted_keywords(functions[kind])  # type: ignore[arg-type]
    kwargs = {k: v for k, v in clip_grad.items() if k != "type"}
    check_keywords(kwargs, keywords, f"clip_grad type={kind!r}", key, extra=("type",))
    check_required(kwargs, keywords, f"clip_grad type={kind!r}", key)
    for name in ("max_norm", "clip_value"):
        if name in kwargs:
            check_number(kwargs[name], name, f"{key}.{name}")
            if kwargs[name] == 0:
                raise OptimizerConfigError(f"{name}=0 would zero every gradient; use a positive value", f"{key}.{name}")
    if "norm_type" in kwargs:
        norm_type = kwargs["norm_type"]
        if not (norm_type == "inf" or (is_number(norm_type) and norm_type > 0 and not math.isnan(norm_type))):
            raise OptimizerConfigError(
                f"norm_type must be a positive number or 'inf', got {_describe(norm_type)}", f"{key}.norm_type"
            )
    for name in ("error_if_nonfinite", "foreach"):
        if name in kwargs and kwargs[name] is not None and not isinstance(kwargs[name], bool):
            raise OptimizerConfigError(f"{name} must be True or False, got {_describe(kwargs[name])}", f"{key}.{name}")
