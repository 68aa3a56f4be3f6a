"""docs/architecture.md matches the code: the modules it names exist, it names every module of the
optimizer package, and its layer order is the one import-linter enforces."""
from __future__ import annotations

import re
import tomllib

from testutils import REPO

DOC = (REPO / "docs" / "architecture.md").read_text()
OPTIM = REPO / "visdet" / "engine" / "optim"


def _layer_rows() -> list[tuple[str, list[str]]]:
    """(layer, module file names) for each row of the optimizer package's table, in order."""
    table = DOC.split("## The optimizer package, lowest layer first", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, list[str]]] = []
    for line in table.splitlines():
        if not line.startswith("| ") or line.startswith("| layer") or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        files = re.findall(r"`([\w/*]+\.py)`", cells[1])
        if cells[0]:
            rows.append((cells[0].strip("`"), files))
        else:
            rows[-1][1].extend(files)
    return rows


def test_every_path_the_doc_names_exists():
    paths = set(re.findall(r"`(visdet/[\w/.]+|configs/[\w/.]+|tools/[\w/.]+|tests/[\w/.]+|docs/[\w/.]+)`", DOC))
    missing = [p for p in sorted(paths) if not (REPO / p).exists() and "heavyball" not in p]
    assert paths and not missing


def test_every_module_of_the_optimizer_package_is_in_its_layer_row():
    named: set[str] = set()
    for layer, files in _layer_rows():
        base = OPTIM / layer.rstrip("/") if layer.endswith("/") else OPTIM
        for name in files or [layer]:
            if "*" in name:
                assert list(base.glob(name)), name
                named.update(str(p.relative_to(OPTIM)) for p in base.glob(name))
                continue
            path = base / name
            assert path.is_file(), f"docs/architecture.md names {path.relative_to(REPO)}, which does not exist"
            named.add(str(path.relative_to(OPTIM)))
    actual = {str(p.relative_to(OPTIM)) for p in OPTIM.rglob("*.py") if p.name != "__init__.py"}
    assert actual - named == set(), "modules missing from docs/architecture.md"


def test_the_doc_lists_the_layers_import_linter_enforces():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers" and c["containers"] == ["visdet.engine.optim"])["layers"]
    documented = [layer.rstrip("/").removesuffix(".py") for layer, _ in _layer_rows()]
    assert documented == list(reversed(layers))
