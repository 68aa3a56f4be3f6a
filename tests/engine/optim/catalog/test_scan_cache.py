"""The scan cache answers as a fresh scan would, rebuilds when anything it read changed, and never fails."""
from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from testutils import run_python
from visdet.engine.optim.catalog import scan, scan_cache
from visdet.engine.optim.catalog.scan import PackageScanner, ScanAnswers

PKG = "fakecachepkg"
FILES = {
    "__init__.py": """
        from .optim import Fancy, Plain, NotAnOptimizer
        try:
            from .optional import Optional
        except ImportError:
            pass
        __all__ = ["Fancy", "Plain", "NotAnOptimizer", "Optional"]
    """,
    "optim.py": """
        import torch
        class Fancy(torch.optim.Optimizer):
            '''A fancy optimizer.'''
        class Plain(torch.optim.SGD):
            pass
        class NotAnOptimizer(dict):
            pass
    """,
}
OPTIONAL = """
    from torch.optim import AdamW
    class Optional(AdamW):
        '''Only there when this file is.'''
"""
MODULES = (PKG, f"{PKG}.optim", f"{PKG}.absent")


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A synthetic optimizer package, a private cache dir, and fresh per-process memos."""
    root = tmp_path / "site" / PKG
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv(scan_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    _forget()
    yield root
    _forget()
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        del sys.modules[name]


def _forget() -> None:
    """Drop what this process remembers, as a new process would start."""
    scan.live_scanner.cache_clear()
    scan.scanner_for.cache_clear()
    scan._installed.cache_clear()
    scan_cache.environment_key.cache_clear()


@pytest.fixture
def parsed(monkeypatch):
    """Modules the parsing scanner reads from here on."""
    seen: list[str] = []
    real = PackageScanner._tree

    def spy(self, dotted):
        if dotted not in self._trees:
            seen.append(dotted)
        return real(self, dotted)

    monkeypatch.setattr(PackageScanner, "_tree", spy)
    return seen


def answers(root) -> dict:
    """Everything the catalogue asks, from a new process's point of view."""
    _forget()
    got = ScanAnswers(PKG, root)
    out = {}
    for module in MODULES:
        names = got.optimizer_classes(module)
        out[module] = [(n, got.find_class(module, n), got.docstring(module, n)) for n in names]
    return out


def fresh(root) -> dict:
    scanner = PackageScanner(PKG, root)
    return {m: [(n, scanner.find_class(m, n), scanner.docstring(m, n)) for n in scanner.optimizer_classes(m)]
            for m in MODULES}


def record(tmp_path):
    (path,) = (tmp_path / "cache" / "scan").glob(f"{PKG}-*.json")
    return path


def test_cached_answers_equal_a_fresh_scan_and_parse_nothing(pkg, parsed, tmp_path):
    cold = answers(pkg)
    assert cold == fresh(pkg)
    assert cold[PKG] == [
        ("Fancy", (f"{PKG}.optim", "Fancy"), "A fancy optimizer."),
        ("Plain", (f"{PKG}.optim", "Plain"), ""),
    ]
    assert record(tmp_path).is_file()
    parsed.clear()
    assert answers(pkg) == cold
    assert parsed == []


def test_editing_or_touching_a_scanned_file_rebuilds(pkg, parsed):
    answers(pkg)
    optim = pkg / "optim.py"
    optim.write_text(optim.read_text() + "class Newer(torch.optim.Adam):\n    '''New in 2.0.'''\n")
    assert [n for n, *_ in answers(pkg)[f"{PKG}.optim"]] == ["Fancy", "Newer", "Plain"]

    parsed.clear()
    stat = optim.stat()
    os.utime(optim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same bytes, new stamp
    assert answers(pkg) == fresh(pkg)
    assert f"{PKG}.optim" in parsed


def test_a_module_file_that_appears_rebuilds(pkg):
    assert [n for n, *_ in answers(pkg)[PKG]] == ["Fancy", "Plain"]
    (pkg / "optional.py").write_text(textwrap.dedent(OPTIONAL))
    assert answers(pkg)[PKG][1] == ("Optional", (f"{PKG}.optional", "Optional"), "Only there when this file is.")


@pytest.mark.parametrize("changed", [PKG, "torch"])
def test_a_new_version_rebuilds(pkg, parsed, monkeypatch, changed):
    versions = {PKG: "1.0", "torch": "2.5.0"}
    monkeypatch.setattr(scan_cache, "distribution_version", lambda name: versions.get(name))
    answers(pkg)
    parsed.clear()
    answers(pkg)
    assert parsed == []
    versions[changed] = "9.9"
    assert answers(pkg) == fresh(pkg)
    assert parsed != []


@pytest.mark.parametrize("content", [
    "{not json", "", "[]", '{"key": 1}', b"\xff\xfe not UTF-8",
    None,  # a valid record with one report damaged: built below
])
def test_a_corrupt_record_is_rescanned_silently(pkg, tmp_path, capfd, content):
    expected = answers(pkg)
    path = record(tmp_path)
    if content is None:
        data = json.loads(path.read_text())
        data["modules"][PKG]["where"] = {"Fancy": 3}
        content = json.dumps(data)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert answers(pkg) == expected
    assert json.loads(path.read_text())["modules"][PKG]["names"] == ["Fancy", "Plain"]  # rewritten whole
    assert capfd.readouterr() == ("", "")


def test_an_unwritable_cache_falls_back_to_scanning(pkg, tmp_path, monkeypatch, capfd):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv(scan_cache.CACHE_DIR_ENV, str(blocker))
    assert answers(pkg) == fresh(pkg)
    assert capfd.readouterr() == ("", "")


def test_a_failed_write_leaves_no_temporary_file(pkg, tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(scan_cache.os, "replace", refuse)
    assert answers(pkg) == fresh(pkg)
    assert list((tmp_path / "cache" / "scan").iterdir()) == []


def test_no_home_means_no_cache(pkg, monkeypatch):
    monkeypatch.delenv(scan_cache.CACHE_DIR_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(scan_cache.Path, "home", no_home)
    assert scan_cache.cache_dir() is None
    assert answers(pkg) == fresh(pkg)


def test_cache_dir_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv(scan_cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert scan_cache.cache_dir() == tmp_path / "xdg" / "visdet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert scan_cache.cache_dir() == tmp_path / "home" / ".cache" / "visdet"


READ_ALL = """
    from visdet.registry import OPTIMIZERS
    from visdet.engine.optim.catalog.catalogue import get_catalog
    entries = get_catalog().entries
    with open({out!r}, "w") as f:
        f.write(repr(sorted((n, e.spec, e.present, e.missing_reason) for n, e in entries.items())))
"""


def test_import_prints_nothing_and_agrees_cold_warm_and_uncached(tmp_path):
    cache = tmp_path / "cache"
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    seen = []
    for label, cache_dir in (("cold", cache), ("warm", cache), ("unwritable", blocker)):
        out = tmp_path / f"{label}.txt"
        result = run_python(READ_ALL.format(out=str(out)), env={scan_cache.CACHE_DIR_ENV: str(cache_dir)})
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == ("", ""), label
        seen.append(out.read_text())
        if label == "cold":
            assert list((cache / "scan").glob("*.json")), "the cold import stored its answers"
    assert seen[0] == seen[1] == seen[2]
