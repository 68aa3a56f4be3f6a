"""Whether a config's optimizer has a learning rate to sweep, and the config key that sets it.

The range test needs an lr that sets the step size. Learning-rate-free
optimizers (D-Adaptation, Prodigy) estimate the step size themselves, their
``lr`` a multiplier of it (the catalogue's ``LR_IS_A_MULTIPLIER`` note), and
some take no lr at all (heavyball's SAMWrapper, AliG): both are refused here,
before anything is built. A wrapper optimizer (Lookahead, SAM) nests the one
it wraps (``optimizer=`` / ``base_optimizer=``, see
``visdet/engine/optim/config/nested_optimizer.py``); the lr is the innermost
one's, so the key printed for ``--cfg-options`` follows the nesting
(``optim_wrapper.optimizer.optimizer.lr`` for Lookahead around AdamW).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from visdet.engine.lr_scaling import is_lr_free
from visdet.engine.optim.config.composed_names import composed_parts
from visdet.errors import ConfigError
from visdet.utils.signatures import accepted_keywords

ROOT_KEY = "optim_wrapper.optimizer"
#: Keywords under which a wrapper optimizer's config nests the optimizer it wraps.
NESTED = ("optimizer", "base_optimizer")


@dataclass(frozen=True)
class LrTarget:
    """Where the swept lr goes in the config, and its value there.

    Attributes:
        key: Dotted config path of the lr (``optim_wrapper.optimizer.lr``).
        value: The config's lr (or the class's default when the config sets none):
            every parameter group keeps its ratio to it during the sweep.
        type_name: The optimizer type that owns the lr.
    """

    key: str
    value: float
    type_name: str


def _chain(cfg: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], str]]:
    """(optimizer config, key) of the optimizer and each one nested in it, outermost first."""
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer")
    key = ROOT_KEY
    while isinstance(optimizer, Mapping):
        yield optimizer, key
        inner = next((k for k in NESTED if isinstance(optimizer.get(k), Mapping)), None)
        optimizer, key = (optimizer[inner], f"{key}.{inner}") if inner else (None, key)


def _resolve(type_name: str) -> type | None:
    """The optimizer class a config ``type`` names; None when visdet cannot tell (its checks report that)."""
    from visdet.engine.optim.catalog.catalogue import get_catalog
    from visdet.registry import OPTIMIZERS

    catalog = get_catalog()
    entry = catalog.lookup(type_name) or catalog.lookup(type_name.rsplit(".", 1)[-1])
    if entry is not None:
        try:
            return entry.resolve()
        except Exception:  # unavailable here: the config checks say why
            return None
    found = OPTIMIZERS.get(type_name)
    return found if isinstance(found, type) else None


def lr_target(cfg: Mapping[str, Any]) -> LrTarget:
    """The lr the range test sweeps, or a :class:`ConfigError` saying why this optimizer has none to sweep."""
    chain = list(_chain(cfg))
    if not chain:
        raise ConfigError("the config has no optimizer to find a learning rate for", ROOT_KEY)
    for optimizer, key in chain:
        type_name = optimizer.get("type")
        if isinstance(type_name, str) and is_lr_free(composed_parts(type_name) or type_name):
            raise ConfigError(
                f"the lr range test is not applicable to {type_name}: it is learning-rate-free (it estimates "
                "its own step size; its lr only multiplies that estimate and stays 1.0), so there is no "
                "learning rate to find; use an optimizer with an lr (AdamW, SGD, ...) or train it as it is",
                f"{key}.type")
    optimizer, key = chain[-1]
    type_name = optimizer.get("type")
    name = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    cls = type_name if isinstance(type_name, type) else _resolve(composed_parts(name) or name)
    value = optimizer.get("lr")
    if cls is not None:
        keywords = accepted_keywords(cls)
        if "lr" not in keywords and not keywords.open:
            raise ConfigError(
                f"the lr range test is not applicable to {name}: it takes no lr (its step size comes from "
                "elsewhere, e.g. the loss or a wrapped optimizer built with its own default), so there is "
                "no learning rate to sweep", f"{key}.type")
        if value is None:
            value = keywords.defaults.get("lr")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"the range test keeps each parameter group's ratio to the config's lr, which must "
                          f"be a number > 0; got {value!r}", f"{key}.lr")
    return LrTarget(key=f"{key}.lr", value=float(value), type_name=name)
