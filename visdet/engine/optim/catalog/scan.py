"""Find the optimizer classes a package exports by reading its source, not importing it.

Why by hand: importing bitsandbytes or DeepSpeed costs 5-7 s on a 2-core CPU
(they pull in ``torch._dynamo``/``torch._inductor`` and probe accelerators) and
prints to the terminal. ``import visdet`` must stay cheap and quiet, yet
``OPTIMIZERS.module_dict`` must list every optimizer the installed version
ships, including ones newer than our catalogue. Parsing the package's Python
files with :mod:`ast` answers "which exported names are ``torch.optim.Optimizer``
subclasses" in milliseconds. The answer is checked against a real import in
the test suite, so a package whose layout defeats the scan is caught there.

Limits: a class built dynamically (``type(...)``, assignment aliases) is not
seen; a base class outside the scanned package is resolved in ``torch``
(already imported by then) or by scanning the installed package it comes
from; a base in a package that is not installed counts as "not an optimizer".

What the catalogue asks, ``scanner_for(top_level)`` answers per module
(``optimizer_classes``, then ``find_class`` and ``docstring`` for those
classes); the answers are kept on disk by
:mod:`~visdet.engine.optim.catalog.scan_cache` with the stamps of every file
the scan probed, so a warm ``import visdet`` parses nothing.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from visdet.engine.optim.catalog import scan_cache
from visdet.engine.optim.catalog.scan_cache import Stamp

_MAX_DEPTH = 24


def package_dir(top_level: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class _Ref:
    """A name bound in a module: a class defined there, or where it came from."""

    module: str  # dotted module that defines or re-exports it
    name: str


# Where a class is defined: ``(module, class name)`` inside the scanned package,
# a dotted path outside it, or None when it cannot be told.
Location = tuple[str, str] | str | None
_Found = tuple[str, ast.ClassDef] | str | None  # the same, with the class's syntax tree


class PackageScanner:
    """Reads one installed package's modules as syntax trees, on demand."""

    def __init__(self, top_level: str, root: Path) -> None:
        self.top_level = top_level
        self.root = root
        self._trees: dict[str, ast.Module | None] = {}
        self._files: dict[str, Path | None] = {}
        self._bindings: dict[str, dict[str, ast.ClassDef | _Ref | str]] = {}
        self.probed: dict[str, Stamp] = {}  # every path looked for, found or not
        self.consulted: set[str] = set()  # other packages whose files decided an answer

    # ----------------------------------------------------------------- files
    def _inside(self, dotted: str) -> bool:
        return dotted == self.top_level or dotted.startswith(self.top_level + ".")

    def _module_file(self, dotted: str) -> Path | None:
        if dotted not in self._files:
            self._files[dotted] = self._probe(dotted)
        return self._files[dotted]

    def _probe(self, dotted: str) -> Path | None:
        """A module's file; each path tried is stamped before it is read, so a later edit shows."""
        parts = dotted.split(".")
        if parts[0] != self.top_level:
            return None
        base = self.root.joinpath(*parts[1:])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            stamp = self.probed[str(candidate)] = scan_cache.file_stamp(str(candidate))
            if stamp is not None:
                return candidate
        return None

    def reads(self, seen: set[str] | None = None) -> tuple[dict[str, Stamp], set[str]]:
        """Stamps of the paths this scan and the scans it consulted probed, and those packages' names."""
        seen = set() if seen is None else seen
        seen.add(self.top_level)
        stamps = dict(self.probed)
        for other in sorted(self.consulted - seen):
            scanner = live_scanner(other)
            if scanner is None:
                seen.add(other)
            else:
                stamps.update(scanner.reads(seen)[0])
        return stamps, seen

    def release(self) -> None:
        """Drop the syntax trees once their answers are stored: hundreds of thousands of
        objects that every later garbage collection, and interpreter exit, would walk
        (~1 s on the 2-core machine). A later question parses again."""
        self._trees.clear()
        self._bindings.clear()

    def _tree(self, dotted: str) -> ast.Module | None:
        if dotted not in self._trees:
            path = self._module_file(dotted)
            tree = None
            if path is not None:
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                    tree = None
            self._trees[dotted] = tree
        return self._trees[dotted]

    def is_package(self, dotted: str) -> bool:
        path = self._module_file(dotted)
        return path is not None and path.name == "__init__.py"

    # --------------------------------------------------------------- binding
    @staticmethod
    def _module_level(tree: ast.Module):
        """Statements at module level, including those inside if/try blocks."""
        stack = list(reversed(tree.body))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, ast.If):
                stack.extend(reversed(node.body + node.orelse))
            elif isinstance(node, ast.Try):
                handlers = [s for h in node.handlers for s in h.body]
                stack.extend(reversed(node.body + handlers + node.orelse + node.finalbody))

    def _absolute(self, module: str, level: int, current: str) -> str:
        if level == 0:
            return module
        package = current if self.is_package(current) else current.rpartition(".")[0]
        for _ in range(level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{module}" if module else package

    def bindings(self, dotted: str) -> dict[str, ast.ClassDef | _Ref | str]:
        """Module-level names: a ClassDef, a ``_Ref`` to an import, or a module path (worked out once)."""
        if dotted not in self._bindings:
            self._bindings[dotted] = self._bind(dotted)
        return self._bindings[dotted]

    def _bind(self, dotted: str) -> dict[str, ast.ClassDef | _Ref | str]:
        tree = self._tree(dotted)
        out: dict[str, ast.ClassDef | _Ref | str] = {}
        if tree is None:
            return out
        for node in self._module_level(tree):
            if isinstance(node, ast.ClassDef):
                out[node.name] = node
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(node.module or "", node.level, dotted)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    out[alias.asname or alias.name] = _Ref(source, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        out[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        out[top] = top
        return out

    def exported_names(self, dotted: str) -> list[str]:
        """Public names a module binds at its top level (classes and imports)."""
        explicit = self._explicit_all(dotted)
        names = explicit if explicit is not None else list(self.bindings(dotted))
        return [n for n in names if not n.startswith("_")]

    def _explicit_all(self, dotted: str) -> list[str] | None:
        tree = self._tree(dotted)
        if tree is None:
            return None
        for node in self._module_level(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    return None
                return [str(v) for v in value]
        return None

    # ------------------------------------------------------------ resolution
    def find_class(self, dotted: str, name: str) -> Location:
        """Where ``dotted.name`` is defined: ``(module, class name)`` inside the
        package, a dotted path outside it, or None when it cannot be told."""
        found = self._locate(dotted, name)
        return (found[0], found[1].name) if isinstance(found, tuple) else found

    def _locate(self, dotted: str, name: str, depth: int = 0) -> _Found:
        if depth > _MAX_DEPTH:
            return None
        if not self._inside(dotted):
            return f"{dotted}.{name}"
        binding = self.bindings(dotted).get(name)
        if isinstance(binding, ast.ClassDef):
            return dotted, binding
        if isinstance(binding, _Ref):
            # ``from pkg import submodule`` binds a module, not a class.
            if self._module_file(f"{binding.module}.{binding.name}") is not None:
                return None
            return self._locate(binding.module, binding.name, depth + 1)
        return None

    def _base_target(self, module: str, expr: ast.expr, depth: int) -> _Found:
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        parts.append(expr.id)
        parts.reverse()
        head, rest = parts[0], parts[1:]
        binding = self.bindings(module).get(head)
        if binding is None:
            return None
        if isinstance(binding, ast.ClassDef):
            return (module, binding) if not rest else None
        if isinstance(binding, str):  # a module bound by ``import x.y``
            dotted = ".".join([binding, *rest])
            mod, _, attr = dotted.rpartition(".")
            return self._locate(mod, attr, depth + 1) if self._inside(mod) else dotted
        if not rest:
            return self._locate(binding.module, binding.name, depth + 1)
        # ``from torch import optim`` then ``optim.Optimizer``.
        dotted = ".".join([binding.module, binding.name, *rest])
        if self._inside(binding.module):
            mod, _, attr = dotted.rpartition(".")
            return self._locate(mod, attr, depth + 1)
        return dotted

    def is_optimizer(self, dotted: str, name: str) -> bool:
        """Whether ``dotted.name`` is a ``torch.optim.Optimizer`` subclass."""
        return self._is_optimizer(self._locate(dotted, name), 0)

    def _is_optimizer(self, target: _Found, depth: int) -> bool:
        if target is None or depth > _MAX_DEPTH:
            return False
        if isinstance(target, str):
            return self._is_optimizer_elsewhere(target, depth)
        module, node = target
        return any(self._is_optimizer(self._base_target(module, b, depth), depth + 1) for b in node.bases)

    def docstring(self, dotted: str, name: str) -> str:
        """First line of the class docstring, or an empty string."""
        target = self._locate(dotted, name)
        if not isinstance(target, tuple):
            return ""
        doc = ast.get_docstring(target[1]) or ""
        return doc.strip().splitlines()[0].strip() if doc.strip() else ""

    def optimizer_classes(self, dotted: str) -> list[str]:
        """Exported names of ``dotted`` that are optimizer classes, sorted."""
        return sorted(n for n in self.exported_names(dotted) if self.is_optimizer(dotted, n))

    def _is_optimizer_elsewhere(self, dotted: str, depth: int) -> bool:
        """A base class outside the scanned package: torch's is checked live, another
        installed package's by scanning that package (GaLore's 8-bit AdamW derives
        from bitsandbytes' ``Optimizer2State``)."""
        if dotted.startswith("torch."):
            return _is_torch_optimizer(dotted)
        top_level = dotted.split(".")[0]
        if top_level in sys.stdlib_module_names:  # ``abc.ABC``, ``enum.Enum``: never an optimizer
            return False
        self.consulted.add(top_level)  # its files (or its absence) now decide answers of ours
        other = live_scanner(top_level)
        if other is None:
            return False
        module, _, attr = dotted.rpartition(".")
        return other._is_optimizer(other._locate(module, attr), depth + 1)


def _is_torch_optimizer(dotted: str) -> bool:
    """Resolve a dotted path in torch (already imported) and test it."""
    if not dotted.startswith("torch."):
        return False
    import torch

    module, _, attr = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)


@lru_cache(maxsize=None)
def live_scanner(top_level: str) -> PackageScanner | None:
    """The process's parsing scanner for an installed package, or None if it is absent."""
    root = package_dir(top_level)
    return PackageScanner(top_level, root) if root is not None else None


class ScanAnswers:
    """One package's scan answers, from the on-disk record while it is valid, else scanned and stored.

    The unit is a module's report: its optimizer classes, where each is
    defined and its docstring, which is all the catalogue asks. A question
    outside a report goes to the parsing scanner and is not stored.
    """

    def __init__(self, top_level: str, root: Path, package: str | None = None) -> None:
        self.top_level = top_level
        self.root = root
        self.package = package or top_level  # distribution name, for the version in the key
        self._path = scan_cache.record_path(top_level, root)
        loaded = scan_cache.load(self._path, _installed)
        self._modules, self._stamps, self._packages = loaded or ({}, {}, {})

    def _live(self) -> PackageScanner:
        scanner = live_scanner(self.top_level)
        return scanner if scanner is not None else PackageScanner(self.top_level, self.root)

    def _report(self, module: str) -> dict[str, Any]:
        report = self._modules.get(module)
        if report is None:
            scanner = self._live()
            names = scanner.optimizer_classes(module)
            where = {n: scanner.find_class(module, n) for n in names}
            report = {
                "names": names,
                "where": {n: list(w) if isinstance(w, tuple) else w for n, w in where.items()},
                "doc": {n: scanner.docstring(module, n) for n in names if isinstance(where[n], tuple)},
            }
            self._modules[module] = report
            self._store(scanner)
        return report

    def _store(self, scanner: PackageScanner) -> None:
        stamps, packages = scanner.reads()
        self._stamps.update(stamps)
        self._packages[self.top_level] = [self.package, _installed(self.top_level, self.package)]
        for other in sorted(packages - {self.top_level}):
            self._packages[other] = [other, _installed(other, other)]
        scan_cache.save(self._path, self._modules, self._stamps, self._packages)
        for top_level in packages:  # this package and those it consulted
            if (live := live_scanner(top_level)) is not None:
                live.release()

    def optimizer_classes(self, module: str) -> list[str]:
        """Exported names of ``module`` that are optimizer classes, sorted."""
        return list(self._report(module)["names"])

    def find_class(self, module: str, name: str) -> Location:
        """Where ``module.name`` is defined (see ``PackageScanner.find_class``)."""
        where = self._report(module)["where"]
        if name not in where:
            return self._live().find_class(module, name)
        found = where[name]
        return (found[0], found[1]) if isinstance(found, list) else found

    def docstring(self, module: str, name: str) -> str:
        """First line of the class docstring, or an empty string."""
        doc = self._report(module)["doc"]
        return doc[name] if name in doc else self._live().docstring(module, name)


@lru_cache(maxsize=None)
def _installed(top_level: str, dist: str) -> list[str | None]:
    """Where a package is installed and at which version, as a record stores it."""
    root = package_dir(top_level)
    return [str(root) if root is not None else None, scan_cache.distribution_version(dist)]


@lru_cache(maxsize=None)
def scanner_for(top_level: str, package: str | None = None) -> ScanAnswers | None:
    """The cached scan answers for an installed package, or None if it is absent.

    ``package`` is its distribution name when it differs from ``top_level``
    (``torch-optimi`` for ``optimi``), so the record is keyed by the right version.
    """
    root = package_dir(top_level)
    return ScanAnswers(top_level, root, package) if root is not None else None
