"""Fill the OPTIMIZERS registry from the sources: idempotent, lazy, quiet.

Every optimizer class an installed source exports gets a name in the registry at import time; the
class itself is imported on first use (a ``LazyOptimizerClass`` stands in until then), because
importing bitsandbytes or DeepSpeed costs seconds. Names are decided by a fixed source order, so the
same install always gives the same names. Filling twice, reloading, or a newer package adding a
class never raises "already registered". Names a downstream project registers under the current
default scope resolve first, as in mmengine.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
from typing import Any

import torch
from mmengine.registry import DefaultScope, Registry, build_from_cfg
from mmengine.registry.build_functions import build_optimizer_from_cfg

from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.catalog.catalogue import CatalogEntry, OptimizerCatalog, get_catalog
from visdet.engine.optim.catalog.listing import info_for
from visdet.engine.optim.errors import OPTIMIZER_KEY, OptimizerConfigError, OptimizerUnavailableError
from visdet.utils.suggestions import suggestion_text

logger = logging.getLogger("visdet.engine.optim")


#: Marks a lazy stand-in. Checked by attribute, not ``isinstance``: ``importlib.reload`` of this
#: module (IPython's %autoreload) makes a new ``LazyOptimizerClass`` while the registry keeps the
#: stand-ins made by the old one, and those must still be recognised, resolved and replaced.
_LAZY_MARK = "_visdet_lazy_optimizer"


def is_lazy(value: Any) -> bool:
    """Whether ``value`` is a lazy stand-in made by any load of this module."""
    return getattr(type(value), _LAZY_MARK, False) is True


class LazyOptimizerClass:
    """Stands in for an optimizer class in the registry until first use."""

    __slots__ = ("entry",)
    _visdet_lazy_optimizer = True  # see _LAZY_MARK

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry

    def resolve(self) -> type:
        return self.entry.resolve()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {self.entry.spec.import_path}>"


class LazyModuleDict(dict):
    """A registry ``module_dict`` whose values import on first access.

    Reading keys (``in``, ``len``, iteration, ``keys()``) never imports;
    reading a value (``d[k]``, ``get``, ``values``, ``items``) returns the
    real class, importing its package if needed.
    """

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if is_lazy(value):
            value = value.resolve()
            super().__setitem__(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[key] for key in self]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(key, self[key]) for key in self]

    def raw(self, key: str) -> Any:
        """The stored value without importing anything."""
        return super().__getitem__(key)


class OptimizerRegistry(Registry):
    """mmengine ``Registry`` with lazy classes and build-time checks.

    ``build`` refuses, with a reason, a name that is unknown (suggesting close
    names), one whose package is missing, or one that cannot run here
    (no CUDA, no process group, needs a DeepSpeed engine), before any
    optimizer code runs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._module_dict = LazyModuleDict()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        scope, real_key = self.split_scope_key(key)
        if (scope is None or scope == self._scope) and real_key in self._module_dict:
            return True
        if self._alias_for(key) is not None:
            return self._alias_target(key) is not None
        return super().__contains__(key)

    # --- aliases: names from other ecosystems (aliases.py) -----------------

    def _alias_for(self, key: object) -> aliases.Alias | aliases.Refusal | None:
        """What ``key`` means as an alias; None when it is a real name (here, in the
        catalogue or in a parent registry), so an alias never shadows one."""
        if not isinstance(key, str) or "." in key or key in self._module_dict or key in get_catalog().entries:
            return None
        item = aliases.find(key)
        node = self.parent
        while item is not None and node is not None:
            if key in node._module_dict:
                return None
            node = node.parent
        return item

    def _alias_target(self, key: str) -> CatalogEntry | None:
        """The present catalogue entry an accepted alias builds, or None."""
        item = self._alias_for(key)
        if not isinstance(item, aliases.Alias):
            return None
        entry = get_catalog().by_class(item.target)
        return entry if entry is not None and entry.present else None

    def get(self, key: str) -> Any:
        """The class for a name; for an alias, its target class with the alias's
        defaults bound (``functools.partial``, as timm's ``get_optimizer_class``)
        so that mmengine's own builders apply them too; None for a refused alias
        or one whose target is not installed."""
        item = self._alias_for(key)
        if item is None:
            return super().get(key)
        entry = self._alias_target(key)
        if entry is None:
            return None
        try:
            cls = entry.resolve()
        except OptimizerUnavailableError:
            return None
        return functools.partial(cls, **item.defaults) if item.defaults else cls  # type: ignore[union-attr]

    def expand_alias(self, cfg: Any, key: str = OPTIMIZER_KEY) -> Any:
        """``cfg`` with an alias ``type`` replaced by its target's registry name and
        the alias's defaults placed under the config's own keywords (which win).

        Configs whose type is not an alias come back unchanged.

        Raises:
            OptimizerConfigError: a recognised spelling visdet refuses to map.
            OptimizerUnavailableError: the target is unknown here or cannot run
                here; the message names the alias and the target.
        """
        obj_type = cfg.get("type") if hasattr(cfg, "get") else None
        item = self._alias_for(obj_type)
        if item is None:
            return cfg
        type_key = f"{key}.type"
        if isinstance(item, aliases.Refusal):
            raise OptimizerConfigError(f"{aliases.describe(item)} is not accepted as an alias: {item.reason}", type_key)
        entry = get_catalog().by_class(item.target)
        if entry is None:
            raise OptimizerUnavailableError(
                f"{aliases.describe(item)} maps to {item.target}, which is not known here: this visdet has no "
                f"{item.target.package} source; run `python tools/list_optimizers.py` for what it has",
                type_key,
            )
        own = {k: v for k, v in cfg.items() if k != "type"}
        reason = entry.why_not(frozenset((*item.defaults, *own)))
        if reason:
            raise OptimizerUnavailableError(
                f"{aliases.describe(item)} maps to '{entry.spec.name}' ({item.target}), "
                f"which cannot run here: {reason}",
                type_key,
            )
        return {"type": entry.spec.name, **item.defaults, **own}

    # --- the current default scope: another project's registry ------------

    def scope_registry(self) -> Registry | None:
        """The optimizer registry of the current default scope when that is another project's, else None.

        mmengine's ``build_from_cfg`` switches to the default scope's registry (``switch_scope_and_registry``,
        importing ``'<scope>.registry'``) before a lookup; visdet resolves names before building, so it does too.
        """
        scope = getattr(DefaultScope.get_current_instance(), "scope_name", None)
        if scope in (None, self._scope, "mmengine"):
            return None
        root = self._get_root_registry()
        if root._search_child(scope) is None:
            try:
                importlib.import_module(f"{scope}.registry")
            except Exception:  # noqa: BLE001  (no such package, or a broken one: no registry)
                return None
        found = root._search_child(scope)
        return found if found is not self else None

    def project_names(self) -> list[str]:
        """Names the default scope's project registers (it and its ancestors below visdet and mmengine's root)."""
        node, names = self.scope_registry(), []
        while node is not None and node is not self._get_root_registry() and node is not self:
            node.import_from_location()
            names.extend(n for n in node._module_dict if n not in names)
            node = node.parent
        return names

    def get_in_scope(self, key: str) -> Any:
        """``key``'s class as mmengine's build finds it: the default scope's project first, then ``get``."""
        in_project = self.split_scope_key(key)[0] is None and key in self.project_names()
        return self.scope_registry().get(key) if in_project else self.get(key)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        lines = [f"OptimizerRegistry(name={self.name}, scope={self.scope}, {len(self)} optimizers)"]
        for name in sorted(self._module_dict):
            value = self._module_dict.raw(name)
            lines.append(f"  {name}: {value!r}")
        return "\n".join(lines)

    def info(self, name: str) -> Any:
        """The listing record (source, version, runs here, why not, state size...) of a name."""
        entry = get_catalog().lookup(name)
        if entry is None:
            raise _unknown_type_error(name, get_catalog().names())
        return info_for(entry)

    def build(self, cfg: dict, *args: Any, **kwargs: Any) -> Any:
        cfg = self.expand_alias(cfg)
        obj_type = cfg.get("type") if hasattr(cfg, "get") else None
        if isinstance(obj_type, str):
            self.check_buildable(obj_type, frozenset(k for k in cfg if k != "type"))
            if "params" in cfg:
                cfg = _rename_params_argument(cfg, self.get(obj_type))
        elif isinstance(obj_type, type) and "params" in cfg:
            cfg = _rename_params_argument(cfg, obj_type)
        if self.build_func is build_optimizer_from_cfg:
            # mmengine's optimizer build function prints "the torch version of Adafactor is
            # registered as TorchAdafactor" whenever type='Adafactor' (on stdout, before any logger
            # exists); in visdet the name is transformers' Adafactor, so the line is wrong here.
            built = build_from_cfg(cfg, self, *args, **kwargs)
        else:
            built = super().build(cfg, *args, **kwargs)
        _log_notes_once(obj_type)
        return built

    def check_buildable(self, obj_type: str, provided: frozenset[str] = frozenset()) -> None:
        """Raise a clear error if ``type=obj_type`` (a name or an alias) cannot be built here."""
        scope, name = self.split_scope_key(obj_type)
        if scope is None and name in self.project_names():
            return  # the default scope's project registers it: its class, nothing of ours to check
        if self._alias_for(obj_type) is not None:
            self.expand_alias({"type": obj_type, **dict.fromkeys(provided)})
            return
        if scope not in (None, self._scope) or "." in name:
            return  # another scope or a dotted import path: mmengine resolves it
        entry = get_catalog().lookup(name)
        if name in self._module_dict:
            if entry is None or not _holds(self._module_dict.raw(name), entry):
                return  # a class registered by the user: nothing to check
        elif entry is None:
            if super().__contains__(obj_type):
                return  # found in a parent registry
            # registry names first: they keep a spelling's lower-case slot over an alias ('AdamW' over 'adamw')
            candidates = [*self.project_names(), *self._module_dict, *get_catalog().names()]
            raise _unknown_type_error(name, list(dict.fromkeys(candidates)))
        reason = entry.why_not(provided)
        if reason:
            raise OptimizerUnavailableError(f"'{name}' cannot run here: {reason}", f"{OPTIMIZER_KEY}.type")


#: Names whose catalogue note was logged in this process.
_NOTES_LOGGED: set[str] = set()


def _log_notes_once(obj_type: Any) -> None:
    """Log the catalogue note of a just-built optimizer at WARNING, once per name per process.

    Notes are caveats a user should see when choosing the optimizer (8-bit
    state is slow on the CPU, lr=1.0 for D-Adaptation, a kernel compiles on
    first use); the listing shows them too, but nobody reads a listing before
    every run.
    """
    catalog = get_catalog()
    if isinstance(obj_type, str):
        entry = catalog.entries.get(obj_type)
    elif isinstance(obj_type, type):
        entry = next((e for e in catalog.entries.values() if e.resolved is obj_type), None)
    else:
        entry = None
    if entry is None or not entry.spec.notes or entry.spec.name in _NOTES_LOGGED:
        return
    _NOTES_LOGGED.add(entry.spec.name)
    logger.warning("%s: %s", entry.spec.name, entry.spec.notes)


def _unknown_type_error(name: str, candidates: set[str] | list[str]) -> OptimizerConfigError:
    """The one message for a ``type`` nobody knows, with the closest names."""
    if aliases.SEPARATOR in name:  # 'timm:sgdd': suggest ecosystem-qualified spellings
        candidates = aliases.all_spellings(qualified=True)
    return OptimizerConfigError(
        f"unknown optimizer type '{name}'{suggestion_text(name, candidates)} "
        "Run `python tools/list_optimizers.py` to see every name and whether it runs here.",
        f"{OPTIMIZER_KEY}.type",
    )


def _rename_params_argument(cfg: dict, cls: Any) -> dict:
    """Pass ``params`` under the name the class uses for it.

    mmengine builds optimizers with ``params=...`` as a keyword, but some
    classes call their first argument otherwise (DeepSpeedCPUAdam:
    ``model_params``), which makes a plain build fail with "unexpected keyword
    argument 'params'".
    """
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        return cfg
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return cfg
    if not parameters or "params" in {p.name for p in parameters}:
        return cfg
    first = parameters[0]
    if first.kind not in (first.POSITIONAL_OR_KEYWORD, first.KEYWORD_ONLY):
        return cfg
    renamed = {k: v for k, v in cfg.items() if k != "params"}
    renamed[first.name] = cfg["params"]
    return renamed


def _holds(value: Any, entry: CatalogEntry) -> bool:
    """Whether a registry value is ``entry``'s class or its lazy stand-in (from any load of this module)."""
    if is_lazy(value):
        return value.entry.spec.import_path == entry.spec.import_path
    return value is not None and value is entry.resolved


def register_all_optimizers(registry: Registry, catalog: OptimizerCatalog | None = None) -> list[str]:
    """Put every present optimizer of the catalogue into ``registry``.

    Safe to call any number of times: names already holding our entry (lazy or
    resolved) are refreshed in place, and a class a user registered under one
    of our names is left alone. Classes whose module is already imported are
    stored resolved; the rest lazily.

    Returns:
        The registered names, in catalogue order.
    """
    catalog = catalog or get_catalog()
    table = registry._module_dict
    names = []
    for name, entry in catalog.entries.items():
        if not entry.present:
            continue
        current = dict.get(table, name)  # the stored value: no import, whatever the dict's class
        if current is not None and not (is_lazy(current) or current is entry.resolved):
            logger.debug("keeping user-registered %s over %s", name, entry.spec.import_path)
            continue
        if entry.resolved is None and entry.spec.module in sys.modules:
            try:
                entry.resolve()
            except OptimizerUnavailableError:
                pass
        dict.__setitem__(table, name, entry.resolved or LazyOptimizerClass(entry))
        names.append(name)
    return names


def _adopt_reloaded_registry() -> None:
    """On ``importlib.reload`` of this module, move visdet's existing OPTIMIZERS onto the new classes.

    The registry object outlives a reload (``visdet.registry`` and every ``from visdet.registry import
    OPTIMIZERS`` hold it, with what users registered), but it and its ``module_dict`` are instances of
    the old classes holding stand-ins for the old catalogue: lookups would run the old code, and
    ``visdet.registry`` (which keeps its child only if it is a current ``OptimizerRegistry``) would
    replace it with an empty one on its own reload. Re-pointing ``__class__`` is what IPython's
    autoreload does for instances; then the new catalogue refills the names. On first import
    ``visdet.registry`` has no OPTIMIZERS yet and nothing happens.
    """
    registry = getattr(sys.modules.get("visdet.registry"), "OPTIMIZERS", None)
    if registry is None or isinstance(registry, OptimizerRegistry):
        return
    if type(registry).__name__ != OptimizerRegistry.__name__ or not isinstance(registry, Registry):
        return  # not ours: leave it
    registry.__class__ = OptimizerRegistry
    registry._module_dict = LazyModuleDict(dict.items(registry._module_dict))
    register_all_optimizers(registry)


_adopt_reloaded_registry()
