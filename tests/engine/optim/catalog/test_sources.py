"""The sources as data: what adding an optimizer package takes (a module, a setup.py extra, a docs row)."""
from __future__ import annotations

import ast
import re

import pytest
from testutils import REPO

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.sources import SOURCES, _load_sources
from visdet.engine.optim.catalog.spec import OptimizerSpec


def _setup_extras() -> dict[str, list[str]]:
    """setup.py's EXTRAS dict, read without running setup()."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "EXTRAS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no EXTRAS dict")


def _docs_rows() -> list[list[str]]:
    """The rows of docs/optimizers.md's table of sources (under "## Names")."""
    text = (REPO / "docs" / "optimizers.md").read_text().split("## Names", 1)[1]
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_every_module_in_the_sources_package_is_a_source_and_ranks_are_unique():
    modules = [p for p in (REPO / "visdet/engine/optim/catalog/sources").glob("*.py") if p.name != "__init__.py"]
    assert len(SOURCES) == len(modules) >= 16  # issue 6's 12, then torchao, heavyball, timm, grokadamw...
    assert [s.rank for s in SOURCES] == sorted(s.rank for s in SOURCES)
    assert len({s.rank for s in SOURCES}) == len(SOURCES)
    assert len({s.prefix for s in SOURCES}) == len(SOURCES)
    assert SOURCES[0].package == "torch"
    assert [s.package for s in SOURCES].index("pytorch-optimizer") == 11  # last of issue 6's, before the later ones
    assert all(isinstance(s, Source) for s in SOURCES)


def test_a_rank_tie_is_refused(monkeypatch):
    """Two sources with one rank would make names depend on discovery order."""
    import visdet.engine.optim.catalog.sources.prodigy as prodigy

    monkeypatch.setattr(prodigy, "SOURCE", Source(rank=SOURCES[0].rank, **{
        k: getattr(prodigy.SOURCE, k) for k in ("package", "top_level", "title", "install_hint", "prefix",
                                                "export_modules")}))
    with pytest.raises(RuntimeError, match="two optimizer sources share a rank"):
        _load_sources()


@pytest.mark.parametrize("source", [s for s in SOURCES if s.package != "torch"], ids=lambda s: s.package)
def test_every_optional_source_has_its_setup_extra(source):
    """`pip install -e ".[all]"` installs it (CI runs its tests), and it has an extra of its own."""
    extras = _setup_extras()
    pip_name = re.compile(rf"^{re.escape(source.package)}\b", re.IGNORECASE)
    own = [name for name, reqs in extras.items()
           if name not in ("all", "tests") and any(pip_name.match(r) for r in reqs)]
    assert own, f"setup.py has no extra that installs {source.package}"


def test_docs_name_every_source_in_rank_order_with_its_import_name_and_prefix():
    rows = _docs_rows()
    assert [int(r[0]) for r in rows] == list(range(1, len(SOURCES) + 1))
    for row, source in zip(rows, SOURCES):
        assert row[1].split()[0] in (source.package, source.title), (row, source.package)
        assert row[2] == f"`{source.top_level}`"
        assert row[3] == ("–" if source.package == "torch" else f"`{source.prefix}`")


def test_a_sources_facts_are_partial_specs_the_catalogue_completes():
    """A source writes facts without identity; spec_for fills name, class, module and source."""
    torch_source = SOURCES[0]
    facts = torch_source.specs["AdamW"]
    assert isinstance(facts, OptimizerSpec) and facts.name == "" and facts.module == ""
    spec = torch_source.spec_for("AdamW", "torch.optim", "AdamW")
    assert (spec.name, spec.class_name, spec.module, spec.source) == ("AdamW", "AdamW", "torch.optim", "torch")
    assert spec.description == facts.description and spec.state_bytes == 8
