"""``Source``: one package that ships optimizers, written as data (one value per source module).

A source knows its catalogue of classes with their facts (so names stay listed
when the package is missing), and finds what the installed version really
exports (so new classes appear without a visdet release). Nothing here imports
the package: discovery reads its files (``scan``), unless the package is torch,
which is imported anyway and is read live.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from visdet.engine.optim.catalog.scan import scanner_for
from visdet.engine.optim.catalog.scan_cache import distribution_version
from visdet.engine.optim.catalog.spec import OptimizerSpec


@dataclass(frozen=True)
class Source:
    """One package that ships optimizers.

    Attributes:
        rank: Naming priority: a class name already taken by a lower-ranked
            source gets this source's ``prefix`` (torch is 0).
        package: Distribution name as pip knows it.
        top_level: Import name of the package (default: ``package`` with ``_`` for ``-``).
        title: Human name used in messages ("DeepSpeed"; default: ``package``).
        install_hint: What to run to install it (default: ``pip install <package>``).
        prefix: Prepended to a class name already taken by an earlier source
            (default: ``top_level`` and ``_``).
        export_modules: Modules whose exported optimizer classes are registered
            (default: the top-level package).
        specs: Class name -> its facts, for every class this source is known to
            ship (listed even when the package is missing). A spec without a
            ``module`` lives in the first export module.
        default: Facts of a discovered class that ``specs`` does not know.
        facts_for: Facts computed from a class name (bitsandbytes' names encode
            them); used instead of ``default`` for classes outside ``specs``.
        only: When set, the only class names registered from this package.
        renames: Class name -> registry name, before collision handling.
        removed: Class name -> the release that removed it, for messages.
        live: Discover by reading the imported module (torch) instead of its files.
    """

    rank: int
    package: str
    top_level: str = ""
    title: str = ""
    install_hint: str = ""
    prefix: str = ""
    export_modules: tuple[str, ...] = ()
    specs: Mapping[str, OptimizerSpec] = field(default_factory=dict)
    default: OptimizerSpec = OptimizerSpec()
    facts_for: Callable[[str], OptimizerSpec] | None = None
    only: frozenset[str] | None = None
    renames: Mapping[str, str] = field(default_factory=dict)
    removed: Mapping[str, str] = field(default_factory=dict)
    live: bool = False

    def __post_init__(self) -> None:
        top_level = self.top_level or self.package.replace("-", "_")
        defaults = {"top_level": top_level, "title": self.package, "install_hint": f"pip install {self.package}",
                    "prefix": f"{top_level}_", "export_modules": (top_level,)}
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)  # frozen: fill the defaults that depend on package

    @cached_property
    def version(self) -> str | None:
        """Installed version (without a local ``+cu128`` part), or None when it is not installed."""
        if scanner_for(self.top_level, self.package) is None:
            return None
        version = distribution_version(self.package)  # the lookup the scan cache keys its records by
        return version.split("+")[0] if version is not None else "unknown"

    @property
    def installed(self) -> bool:
        return self.version is not None

    def known(self) -> dict[str, str]:
        """Class name -> module of every class the catalogue lists for this source."""
        return {name: spec.module or self.export_modules[0] for name, spec in self.specs.items()}

    def discover(self) -> dict[str, str]:
        """Class name -> module of the optimizer classes the installed version defines and exports.

        A class the package only re-exports from elsewhere (pytorch-optimizer
        exports torch's ``Adam``; transformers' module binds torch's
        ``Optimizer``) is left to its own source; ``only`` narrows the rest.
        """
        found = self._discover_live() if self.live else self._discover_by_scan()
        return {name: module for name, module in found.items() if self.only is None or name in self.only}

    def _discover_by_scan(self) -> dict[str, str]:
        scanner = scanner_for(self.top_level, self.package)
        if scanner is None:
            return {}
        found: dict[str, str] = {}
        for module in self.export_modules:
            for name in scanner.optimizer_classes(module):
                if isinstance(scanner.find_class(module, name), tuple):
                    found.setdefault(name, module)
        return found

    def _discover_live(self) -> dict[str, str]:
        """Every ``torch.optim.Optimizer`` subclass the imported export modules hold, plus the
        known classes of other modules (ZeroRedundancyOptimizer), which are not imported to check."""
        found: dict[str, str] = {}
        for module_name in self.export_modules:
            module = sys.modules.get(module_name)
            for name in sorted(dir(module)) if module is not None else ():
                obj = getattr(module, name)
                is_optimizer = isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
                if is_optimizer and obj is not torch.optim.Optimizer:
                    found.setdefault(name, module_name)
        if torch.distributed.is_available():
            found.update({n: m for n, m in self.known().items() if m not in self.export_modules})
        return found

    def describe(self, class_name: str, module: str) -> str:
        """First docstring line of the installed class: live when its module is imported, else read from source."""
        live = sys.modules.get(module)
        if live is not None:
            doc = (getattr(getattr(live, class_name, None), "__doc__", None) or "").strip()
            return doc.splitlines()[0].strip() if doc else ""
        scanner = scanner_for(self.top_level, self.package)
        return scanner.docstring(module, class_name) if scanner else ""

    def spec_for(self, class_name: str, module: str, name: str) -> OptimizerSpec:
        """The full record of one class registered as ``name``."""
        facts = self.specs.get(class_name)
        if facts is None:
            facts = self.facts_for(class_name) if self.facts_for else self.default
        description = facts.description or self.describe(class_name, module) or f"{self.title} optimizer"
        return replace(facts, name=name, class_name=class_name, module=module, source=self.package,
                       description=description)

    def registry_name(self, class_name: str) -> str:
        """The name before collision handling."""
        return self.renames.get(class_name, class_name)
