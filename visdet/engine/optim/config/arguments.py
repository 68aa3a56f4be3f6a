"""Check an optimizer's keyword arguments and their values against the class it names.

Python reports an unknown keyword only when the class is called, as a bare
``TypeError``; a string where a number belongs fails at the first step, hours
in. Here every keyword is checked against what the class accepts (see
``visdet.utils.signatures``), with a did-you-mean, and the values whose
meaning is the same in every optimizer (lr, betas, eps, weight decay,
momentum) are range-checked, all raising ``OptimizerConfigError``. Keywords
the class may take through ``**kwargs`` that visdet cannot follow give an
``OptimizerConfigWarning`` instead.
"""
from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import Keywords
from visdet.utils.suggestions import suggestion_text


class OptimizerConfigWarning(UserWarning):
    """A config that builds but probably does not do what its author meant."""



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


def describe(value: Any) -> str:
    """``value`` as an error message names it: a string quoted, anything else with its type."""
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
        raise OptimizerConfigError(f"{name} must be a number, got {describe(value)}{hint}", key)
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
        raise OptimizerConfigError(f"betas must be a tuple of numbers like (0.9, 0.999), got {describe(value)}", key)
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
# num_iterations: Ranger21's run length, which it divides by (0 or False: ZeroDivisionError inside the class).
_INT_AT_LEAST_ONE = frozenset({"min_8bit_size", "num_iterations"})


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
            raise OptimizerConfigError(f"{name} must be True or False, got {describe(value)}", key)
    elif is_number(default):
        if not (is_number(value) or _is_scalar_tensor(value)):
            check_number(value, name, key, low=None)  # raises with the message for numbers
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise OptimizerConfigError(f"{name} must be a string like {default!r}, got {describe(value)}", key)
    elif isinstance(default, tuple) and default and all(v is None or is_number(v) for v in default):
        # e.g. Rprop etas=(0.5, 1.2); Adafactor eps=(None, 1e-3), where None means "choose for me"
        if not isinstance(value, (tuple, list)) or len(value) != len(default):
            none_ok = " (None where the default has None)" if None in default else ""
            raise OptimizerConfigError(
                f"{name} must be a tuple of {len(default)} numbers like {default}{none_ok}, got {describe(value)}", key
            )
        for i, item in enumerate(value):
            if not (item is None and default[i] is None):
                check_number(item, f"{name}[{i}]", key, low=None, allow_tensor=True)


def check_int_at_least(value: Any, name: str, key: str, low: int) -> None:
    """Refuse anything but an int ``>= low`` (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptimizerConfigError(f"{name} must be an integer >= {low}, got {describe(value)}", key)
    if value < low:
        raise OptimizerConfigError(f"{name} must be an integer >= {low}, got {value}", key)

