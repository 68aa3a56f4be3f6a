"""Each compared optimizer's hyperparameters, and where they came from (a column of the table).

An optimizer compared at a poor learning rate loses for the wrong reason, so
each gets the best-informed settings available, first of:

1. its entry in ``--hparams FILE`` (a Python file in visdet's config style:
   ``hparams = dict(SGD=dict(lr=0.02, momentum=0.9), Lion=dict(lr=3e-5))``);
2. the config's own ``optim_wrapper.optimizer`` when it is the same optimizer;
3. a shipped family config ``configs/faster_rcnn_*.py`` whose optimizer is it
   (their settings were chosen for the same detector and data), with that
   config's ``paramwise_cfg``;
4. the class's own defaults.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mmengine.config import Config

from visdet.choosing.compare.selection import Choice
from visdet.engine.optim.catalog.catalogue import get_catalog
from visdet.errors import ConfigError
from visdet.utils.suggestions import suggestion_text

#: The command-line key of the override file.
KEY = "--hparams"
#: The shipped configs searched for an optimizer's settings (next to the package in a checkout).
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
#: Shipped configs that are variants of the default one (strategies), not an optimizer family's settings.
_NOT_FAMILIES = ("faster_rcnn_r18_small",)
#: optim_wrapper types whose optimizer settings suit the plain wrapper the comparison trains with.
_PLAIN_WRAPPERS = (None, "OptimWrapper", "AmpOptimWrapper")


@dataclass(frozen=True)
class Hyperparams:
    """The optimizer config of one run (without ``type``) and its source, e.g. ``configs/faster_rcnn_lion.py``."""

    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    #: From a family config: its ``optim_wrapper.paramwise_cfg`` ({} when it has none), which its settings were
    #: chosen with (LBFGS's sets no weight decay, so the base config's decay multipliers would not apply).
    paramwise_cfg: dict[str, Any] | None = None

    def text(self) -> str:
        """``lr=0.0001, weight_decay=0.05`` (nested optimizers as ``base_optimizer=SGD(lr=0.1)``)."""
        return ", ".join(f"{k}={_short(v)}" for k, v in self.values.items()) or "(class defaults)"


def _short(value: Any) -> str:
    if isinstance(value, Mapping) and "type" in value:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in value.items() if k != "type")
        return f"{value['type']}({inner})"
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def _canonical(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    entry = get_catalog().lookup(name) or get_catalog().lookup(name.rsplit(".", 1)[-1])
    return entry.spec.name if entry is not None else name


def _plain(value: Any) -> Any:
    """ConfigDict/tuple trees as plain dicts and lists (what a dumped config and JSON both take)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if k != "_delete_"}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def load_hparams_file(path: str | None, choices: list[Choice]) -> dict[str, dict[str, Any]]:
    """``--hparams FILE``'s ``hparams`` dict keyed by the canonical name; raises ConfigError naming ``--hparams``."""
    if not path:
        return {}
    if not Path(path).is_file():
        raise ConfigError(f"file '{path}' does not exist", KEY)
    try:
        loaded = Config.fromfile(path)
    except Exception as error:  # mmengine reports a syntax or import error in the file in many types
        raise ConfigError(f"'{path}' cannot be read as a Python config file ({type(error).__name__}: {error}); "
                          "write it as: hparams = dict(SGD=dict(lr=0.02, momentum=0.9), Lion=dict(lr=3e-5))",
                          KEY) from None
    table = loaded.get("hparams")
    if not isinstance(table, Mapping):
        found = f"a {type(table).__name__}" if table is not None else "no 'hparams'"
        raise ConfigError(f"'{path}' must define hparams = dict(<optimizer>=dict(lr=..., ...), ...); it has "
                          f"{found}", KEY)
    by_name = {c.name: c for c in choices} | {c.canonical: c for c in choices}
    out: dict[str, dict[str, Any]] = {}
    for name, values in table.items():
        if name not in by_name:
            raise ConfigError(f"'{path}' has settings for '{name}', which is not in --optimizers "
                              f"({', '.join(c.name for c in choices)}){suggestion_text(name, by_name)}", KEY)
        if not isinstance(values, Mapping):
            raise ConfigError(f"hparams['{name}'] must be a dict of the optimizer's arguments, e.g. "
                              f"dict(lr=1e-3); got {values!r}", KEY)
        values = _plain(values)
        given_type = values.pop("type", None)
        if given_type is not None and _canonical(given_type) != by_name[name].canonical:
            raise ConfigError(f"hparams['{name}'] sets type='{given_type}'; leave type out (the key names "
                              "the optimizer)", KEY)
        out[by_name[name].canonical] = values
    return out


@lru_cache(maxsize=64)
def family_optimizers(mentioning: tuple[str, ...]) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    """(canonical name, config path, optimizer settings) of the shipped configs with a plain wrapper.

    Only configs whose text mentions one of ``mentioning`` (the optimizer's spellings) are loaded: reading
    all of them costs seconds, and a config that sets an optimizer names it (one inheriting it is a variant
    of the one that names it).
    """
    found = []
    for path in sorted(CONFIGS.glob("faster_rcnn_*.py")) if CONFIGS.is_dir() else []:
        text = path.read_text().lower()
        if path.stem in _NOT_FAMILIES or not any(word.lower() in text for word in mentioning):
            continue
        try:
            wrapper = Config.fromfile(str(path)).get("optim_wrapper") or {}
        except Exception:  # noqa: BLE001 - an unreadable shipped config is simply not a source of settings
            continue
        optimizer = wrapper.get("optimizer") or {}
        if wrapper.get("type") in _PLAIN_WRAPPERS and isinstance(optimizer.get("type"), str):
            settings = _plain(optimizer)
            settings["paramwise_cfg"] = _plain(wrapper.get("paramwise_cfg") or {})
            found.append((_canonical(settings.pop("type")), f"configs/{path.name}", settings))
    return tuple(found)


def choose_hyperparams(choice: Choice, config_optimizer: Mapping[str, Any] | None,
                       overrides: Mapping[str, dict[str, Any]]) -> Hyperparams:
    """The settings of one optimizer, first of: --hparams, the config's own, a family config, the defaults."""
    if choice.canonical in overrides:
        return Hyperparams(copy.deepcopy(overrides[choice.canonical]), KEY)
    if config_optimizer and _canonical(config_optimizer.get("type")) == choice.canonical:
        values = _plain(config_optimizer)
        values.pop("type", None)
        return Hyperparams(values, "config")
    for canonical, path, settings in family_optimizers((choice.name, choice.canonical)):
        if canonical == choice.canonical:
            settings = copy.deepcopy(settings)
            paramwise = settings.pop("paramwise_cfg")
            return Hyperparams(settings, path, paramwise)
    return Hyperparams({}, f"defaults of {choice.canonical}")
