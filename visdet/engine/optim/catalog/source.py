"""What every optimizer source provides: install state, discovery, metadata.

A source is one package that ships optimizers. It knows its catalogue of
names (so names stay listed when the package is missing), discovers what the
installed version really exports (so new classes appear without a visdet
release), and attaches metadata. Nothing here imports the package itself.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import cached_property

from visdet.engine.optim.catalog.spec import Meta
from visdet.engine.optim.catalog.scan import scanner_for


@dataclass(frozen=True)
class Found:
    """A class name and the module that exports it."""

    class_name: str
    module: str


@dataclass
class Source:
    """One package that ships optimizers.

    Attributes:
        package: Distribution name as pip knows it.
        top_level: Import name of the package.
        title: Human name used in messages ("DeepSpeed").
        install_hint: What to run to install it.
        prefix: Prepended to a class name already taken by an earlier source.
        export_modules: Modules whose exported optimizer classes are registered.
        known: Catalogue of names this source is known to ship, with their
            module, so they stay listed when the package is missing.
        removed: Class name -> the release that removed it, for messages.
    """

    package: str
    top_level: str
    title: str
    install_hint: str
    prefix: str
    export_modules: tuple[str, ...]
    known: tuple[Found, ...] = ()
    removed: dict[str, str] = field(default_factory=dict)

    @cached_property
    def version(self) -> str | None:
        """Installed version, or None when the package is not installed."""
        if scanner_for(self.top_level) is None:
            return None
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    @property
    def installed(self) -> bool:
        return self.version is not None

    def discover(self) -> list[Found]:
        """Optimizer classes the installed version defines and exports (empty if absent).

        A class the package only re-exports from elsewhere (pytorch-optimizer
        exports torch's ``Adam``; transformers' module binds torch's
        ``Optimizer``) is left to its own source, and ``keep`` can narrow the rest.
        """
        scanner = scanner_for(self.top_level)
        if scanner is None:
            return []
        found: list[Found] = []
        for module in self.export_modules:
            for name in scanner.optimizer_classes(module):
                candidate = Found(name, module)
                if isinstance(scanner.find_class(module, name), tuple) and self.keep(candidate):
                    found.append(candidate)
        return found

    def keep(self, found: Found) -> bool:
        """Whether an exported optimizer class is registered (all, unless a source narrows it)."""
        return True

    def describe(self, found: Found) -> str:
        """First docstring line of the installed class, read from source."""
        scanner = scanner_for(self.top_level)
        return scanner.docstring(found.module, found.class_name) if scanner else ""

    def meta(self, class_name: str) -> Meta:
        """Metadata for a class; sources override with their catalogue."""
        return Meta()

    def registry_name(self, class_name: str) -> str:
        """The name before collision handling (sources may rename)."""
        return class_name
