"""Fill the OPTIMIZERS registry from the sources: idempotent, lazy, quiet.

Every optimizer class an installed source exports gets a name in the
registry at import time; the class itself is imported on first use (a
``LazyOptimizerClass`` stands in until then), because importing bitsandbytes
or DeepSpeed costs seconds. Names are decided by a fixed source order, so
the same install always gives the same names. Filling twice, reloading, or a
newer package adding a class never raises "already registered".
"""
from __future__ import annotations

import inspect
import logging
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from mmengine.registry import Registry

from .availability import unmet_needs
from .catalog import OptimizerSpec
from .errors import OptimizerConfigError, OptimizerUnavailableError, suggestion_text
from .quiet import quiet_import
from .sources import Found, Source, default_sources

logger = logging.getLogger("visdet.engine.optim")

#: The config path registry-level errors are reported at.
OPTIMIZER_KEY = "optim_wrapper.optimizer"


@dataclass
class CatalogEntry:
    """One optimizer name: its record, its source, and whether it exists here."""

    spec: OptimizerSpec
    source: Source
    present: bool  # the installed package exports the class
    missing_reason: str = ""
    import_error: str = ""
    resolved: type | None = None

    def why_not(self, provided: frozenset[str] = frozenset()) -> str:
        """Why it cannot run here now; empty when it can."""
        if not self.present:
            return self.missing_reason
        if self.import_error:
            return self.import_error
        return "; ".join(unmet_needs(self.spec, provided))

    def resolve(self) -> type:
        """Import the real class (quietly) and remember it."""
        if self.resolved is not None:
            return self.resolved
        if not self.present:
            raise OptimizerUnavailableError(f"{self.spec.name}: {self.missing_reason}", OPTIMIZER_KEY)
        if self.import_error:
            raise OptimizerUnavailableError(f"{self.spec.name}: {self.import_error}", OPTIMIZER_KEY)
        try:
            module = quiet_import(self.spec.module)
            cls = getattr(module, self.spec.class_name)
        except Exception as exc:  # any failure inside a third-party import
            title, version = self.source.title, self.source.version
            self.import_error = (
                f"{title} {version} is installed but failed to import "
                f"({type(exc).__name__}: {exc}); reinstall it ({self.source.install_hint})"
            )
            raise OptimizerUnavailableError(f"{self.spec.name}: {self.import_error}", OPTIMIZER_KEY) from exc
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            self.import_error = f"{self.spec.import_path} is not a torch.optim.Optimizer subclass"
            raise OptimizerUnavailableError(f"{self.spec.name}: {self.import_error}", OPTIMIZER_KEY)
        self.resolved = cls
        return cls


class OptimizerCatalog:
    """Every optimizer visdet knows of, present here or not, by registry name."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.entries: dict[str, CatalogEntry] = {}
        self._aliases: dict[str, str] = {}
        for source in sources:
            self._add_source(source)

    def _add_source(self, source: Source) -> None:
        failure = ""
        try:
            discovered = {f.class_name: f for f in source.discover()}
        except Exception as exc:  # a broken install must not break ``import visdet``
            logger.debug("could not inspect %s", source.package, exc_info=True)
            discovered, failure = {}, f"{source.title} could not be inspected ({type(exc).__name__}: {exc})"
        known = {f.class_name: f for f in source.known}
        for class_name in sorted(discovered.keys() | known.keys()):
            found = discovered.get(class_name) or known[class_name]
            name = source.registry_name(class_name)
            if name in self.entries:
                name = f"{source.prefix}{name}"
            if name in self.entries:
                logger.debug("skipping %s.%s: name %s taken twice", found.module, class_name, name)
                continue
            present = class_name in discovered
            self.entries[name] = CatalogEntry(
                spec=self._spec(source, found, name),
                source=source,
                present=present,
                missing_reason="" if present else failure or self._missing_reason(source, class_name),
            )
            for alias in self.entries[name].spec.aliases:
                self._aliases.setdefault(alias, name)

    @staticmethod
    def _spec(source: Source, found: Found, name: str) -> OptimizerSpec:
        meta = source.meta(found.class_name)
        description = meta.description or source.describe(found) or f"{source.title} optimizer"
        return OptimizerSpec(
            name=name,
            class_name=found.class_name,
            module=found.module,
            source=source.package,
            description=description,
            devices=meta.devices,
            state_bytes=meta.state_bytes,
            state_note=meta.state_note,
            needs=meta.needs,
            notes=meta.notes,
        )

    @staticmethod
    def _missing_reason(source: Source, class_name: str) -> str:
        if not source.installed:
            return f"{source.title} is not installed ({source.install_hint})"
        reason = f"not in the installed {source.title} {source.version}"
        if class_name in source.removed:
            reason += f" (removed in {source.removed[class_name]}; {source.install_hint})"
        return reason

    def lookup(self, name: str) -> CatalogEntry | None:
        """The entry for a registry name or alias."""
        return self.entries.get(self._aliases.get(name, name))

    def names(self) -> list[str]:
        return list(self.entries) + list(self._aliases)


@lru_cache(maxsize=1)
def get_catalog() -> OptimizerCatalog:
    """The process-wide catalogue, built once from the default sources."""
    return OptimizerCatalog(default_sources())


class LazyOptimizerClass:
    """Stands in for an optimizer class in the registry until first use."""

    __slots__ = ("entry",)

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
        if isinstance(value, LazyOptimizerClass):
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
        return super().__contains__(key)

    def __repr__(self) -> str:
        lines = [f"OptimizerRegistry(name={self.name}, scope={self.scope}, {len(self)} optimizers)"]
        for name in sorted(self._module_dict):
            value = self._module_dict.raw(name)
            lines.append(f"  {name}: {value!r}")
        return "\n".join(lines)

    def info(self, name: str) -> Any:
        """The listing record (source, version, runs here, why not, state size...) of a name."""
        from .listing import info_for  # listing imports this module

        entry = get_catalog().lookup(name)
        if entry is None:
            raise _unknown_type_error(name, get_catalog().names())
        return info_for(entry)

    def build(self, cfg: dict, *args: Any, **kwargs: Any) -> Any:
        obj_type = cfg.get("type") if hasattr(cfg, "get") else None
        if isinstance(obj_type, str):
            self.check_buildable(obj_type, frozenset(k for k in cfg if k != "type"))
            if "params" in cfg:
                cfg = _rename_params_argument(cfg, self.get(obj_type))
        elif isinstance(obj_type, type) and "params" in cfg:
            cfg = _rename_params_argument(cfg, obj_type)
        return super().build(cfg, *args, **kwargs)

    def check_buildable(self, obj_type: str, provided: frozenset[str] = frozenset()) -> None:
        """Raise a clear error if ``type=obj_type`` cannot be built here."""
        scope, name = self.split_scope_key(obj_type)
        if scope not in (None, self._scope) or "." in name:
            return  # another scope or a dotted import path: mmengine resolves it
        entry = get_catalog().lookup(name)
        if name in self._module_dict:
            if entry is None or not _holds(self._module_dict.raw(name), entry):
                return  # a class registered by the user: nothing to check
        elif entry is None:
            if super().__contains__(obj_type):
                return  # found in a parent registry
            raise _unknown_type_error(name, set(self._module_dict) | set(get_catalog().names()))
        reason = entry.why_not(provided)
        if reason:
            raise OptimizerUnavailableError(f"'{name}' cannot run here: {reason}", f"{OPTIMIZER_KEY}.type")


def _unknown_type_error(name: str, candidates: set[str] | list[str]) -> OptimizerConfigError:
    """The one message for a ``type`` nobody knows, with the closest names."""
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
    """Whether a registry value is ``entry``'s class or its lazy stand-in."""
    if isinstance(value, LazyOptimizerClass):
        return value.entry is entry
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
    raw_get = table.raw if isinstance(table, LazyModuleDict) else table.get
    names = []
    for name, entry in catalog.entries.items():
        if not entry.present:
            continue
        current = raw_get(name) if name in table else None
        if current is not None and not (isinstance(current, LazyOptimizerClass) or current is entry.resolved):
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
