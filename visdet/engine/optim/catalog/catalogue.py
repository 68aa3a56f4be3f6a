"""The catalogue: every optimizer visdet knows of, by registry name, and whether it exists here.

Built once per process from the sources, in their fixed naming order; each
entry pairs the optimizer's frozen record (``OptimizerSpec``) with what is true
in this install (present, import failure, the resolved class).
"""
from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.catalog.availability import unmet_needs
from visdet.engine.optim.catalog.spec import OptimizerSpec
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.sources import default_sources
from visdet.engine.optim.errors import OPTIMIZER_KEY, OptimizerUnavailableError
from visdet.utils.quiet_import import quiet_import

logger = logging.getLogger("visdet.engine.optim")


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
        for source in sources:
            self._add_source(source)
        self._by_class = {(_norm(e.source.package), e.spec.class_name): e for e in self.entries.values()}
        self._attach_aliases()

    def _add_source(self, source: Source) -> None:
        failure = ""
        try:
            discovered = source.discover()
        except Exception as exc:  # a broken install must not break ``import visdet``
            logger.debug("could not inspect %s", source.package, exc_info=True)
            discovered, failure = {}, f"{source.title} could not be inspected ({type(exc).__name__}: {exc})"
        known = source.known()
        for class_name in sorted(discovered.keys() | known.keys()):
            module = discovered.get(class_name) or known[class_name]
            name = source.registry_name(class_name)
            if name in self.entries:
                name = f"{source.prefix}{name}"
            if name in self.entries:
                logger.debug("skipping %s.%s: name %s taken twice", module, class_name, name)
                continue
            present = class_name in discovered
            self.entries[name] = CatalogEntry(
                spec=source.spec_for(class_name, module, name),
                source=source,
                present=present,
                missing_reason="" if present else failure or self._missing_reason(source, class_name),
            )

    def _attach_aliases(self) -> None:
        """Record on each entry the other-ecosystem spellings that build it (``spec.aliases``).

        A bare spelling is listed where it resolves; the qualified one
        (``timm:sgd``) only where the bare one means something else.
        """
        found: dict[str, list[str]] = {}
        for item in aliases.table():
            if not isinstance(item, aliases.Alias) or item.name in self.entries:
                continue
            entry = self.by_class(item.target)
            if entry is not None:
                found.setdefault(entry.spec.name, []).append(
                    item.name if aliases.is_bare_winner(item) else item.qualified
                )
        for name, spellings in found.items():
            entry = self.entries[name]
            entry.spec = replace(entry.spec, aliases=tuple(dict.fromkeys((*entry.spec.aliases, *spellings))))

    @staticmethod
    def _missing_reason(source: Source, class_name: str) -> str:
        if not source.installed:
            return f"{source.title} is not installed ({source.install_hint})"
        reason = f"not in the installed {source.title} {source.version}"
        if class_name in source.removed:
            reason += f" (removed in {source.removed[class_name]}; {source.install_hint})"
        return reason

    def by_class(self, target: aliases.Target) -> CatalogEntry | None:
        """The entry for a package's class (an alias target), whatever its registry name."""
        return self._by_class.get((_norm(target.package), target.class_name))

    def lookup(self, name: str) -> CatalogEntry | None:
        """The entry for a registry name, or for an alias whose target visdet knows."""
        entry = self.entries.get(name)
        if entry is None:
            item = aliases.find(name)
            if isinstance(item, aliases.Alias):
                entry = self.by_class(item.target)
        return entry

    def names(self) -> list[str]:
        """Registry names and alias spellings, for did-you-mean lists."""
        return list(self.entries) + aliases.all_spellings()


def _norm(package: str) -> str:
    """A pip name in PEP 503 form, so ``pytorch_optimizer`` and ``pytorch-optimizer`` match."""
    return re.sub(r"[-_.]+", "-", package).lower()


@lru_cache(maxsize=1)
def get_catalog() -> OptimizerCatalog:
    """The process-wide catalogue, built once from the default sources."""
    return OptimizerCatalog(default_sources())


def spec_for_class(cls: type) -> OptimizerSpec | None:
    """The record of an optimizer class, found by identity among the catalogue's classes.

    A class is matched through the module that exports it (apollo-torch defines
    ``AdamW`` and exports it as ``APOLLOAdamW``), without importing anything new:
    ``cls`` exists, so its package is imported already.
    """
    top = cls.__module__.split(".")[0]
    for entry in get_catalog().entries.values():
        spec = entry.spec
        if entry.resolved is cls:
            return spec
        if spec.module.split(".")[0] != top or spec.module not in sys.modules:
            continue
        if getattr(sys.modules[spec.module], spec.class_name, None) is cls:
            return spec
    return None
