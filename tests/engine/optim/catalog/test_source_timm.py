"""timm as a source: its classes in the catalogue, its create_optimizer_v2 names as aliases, held to timm itself.

The alias table in ``catalog/aliases.py`` is static (importing timm costs ~10 s, and the
catalogue imports no backend); these tests import timm and compare that table with
timm's own registry, so a timm release that renames or re-defaults a name fails here.
"""
from __future__ import annotations

import inspect

import pytest
import torch
from mmengine.config import Config

from testutils import REPO, SmallNet
from visdet.engine.optim import get_catalog
from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.wrappers.builder import build_optim_wrapper
from visdet.registry import OPTIMIZERS

timm_optim = pytest.importorskip("timm.optim")  # an optional source: installed by `.[timm]` and in CI
from timm.optim.kron import Kron  # noqa: E402  (not re-exported by timm.optim)


def _timm_registry() -> dict[str, object]:
    return {name: timm_optim.get_optimizer_info(name) for name in timm_optim.list_optimizers()}


def test_every_timm_name_is_an_alias_or_a_refusal_and_timms_own_classes_are_never_refused():
    for name, info in _timm_registry().items():
        item = aliases.find(f"timm:{name}")
        assert item is not None, f"timm's {name!r} is neither an alias nor a refusal"
        own = not isinstance(info.opt_class, str) and info.opt_class.__module__.startswith("timm.")
        if own:
            assert isinstance(item, aliases.Alias), f"{name}: timm's own {info.opt_class.__name__} is a source now"


def test_aliases_on_timms_classes_are_timms_table_with_its_momentum_rule():
    """Target class and keywords exactly as create_optimizer_v2 builds them (momentum=0.9 where it has one)."""
    registry = _timm_registry()
    on_timm = [a for a in aliases.table() if isinstance(a, aliases.Alias) and a.target.package == "timm"]
    assert len(on_timm) >= 50
    for alias in on_timm:
        info = registry[alias.name]
        expected = dict(info.defaults or {})
        if info.has_momentum:
            expected.setdefault("momentum", 0.9)
        assert alias.target.class_name == info.opt_class.__name__, alias.name
        assert dict(alias.defaults) == expected, alias.name


def test_the_catalogue_holds_every_optimizer_class_timm_defines():
    """The file scan finds what a real import exports (torch's re-exports stay torch's), plus Kron."""
    defined = {name for name, obj in vars(timm_optim).items() if inspect.isclass(obj)
               and issubclass(obj, torch.optim.Optimizer) and obj.__module__.startswith("timm.")}
    entries = [e for e in get_catalog().entries.values() if e.spec.source == "timm"]
    assert {e.spec.class_name for e in entries} == defined | {"Kron"}
    assert all(e.resolve().__module__.startswith("timm.optim") for e in entries)
    assert get_catalog().entries["timm_Kron"].resolve() is Kron


def _update(cfg: dict, grads: list[float]) -> torch.Tensor:
    """What a 1-D parameter moves by over steps with these (constant per entry) gradients."""
    param = torch.nn.Parameter(torch.zeros(4))
    optimizer = OPTIMIZERS.build(dict(params=[param], **cfg))
    for g in grads:
        param.grad = torch.full((4,), g)
        optimizer.step()
    return param.detach().clone()


def test_cautious_alias_masks_updates_against_the_gradient():
    """'cadamw' is timm's AdamWLegacy with caution=True: after the gradient turns to a smaller, opposite
    one the momentum still points the old way, so the cautious step is masked where the plain one
    ('adamwlegacy') moves on."""
    cfg = dict(lr=0.1, weight_decay=0.0)
    first = _update(dict(type="cadamw", **cfg), [1.0])
    cautious = _update(dict(type="cadamw", **cfg), [1.0, -0.5])
    plain = _update(dict(type="adamwlegacy", **cfg), [1.0, -0.5])
    built = OPTIMIZERS.build(dict(type="cadamw", params=[torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert type(built) is timm_optim.AdamWLegacy and built.defaults["caution"] is True
    assert torch.equal(cautious, first)  # the second step masked out entirely
    assert not torch.equal(plain, first)


def test_shipped_timm_config_builds_cautious_nadamw_through_visdets_constructor():
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_timm_nadamw.py")).optim_wrapper
    wrapper = build_optim_wrapper(SmallNet(), cfg)
    assert type(wrapper.optimizer) is timm_optim.NAdamW and wrapper.optimizer.defaults["caution"] is True
    no_decay = [g for g in wrapper.optimizer.param_groups if g["weight_decay"] == 0.0]
    assert no_decay and any(g["weight_decay"] == 0.05 for g in wrapper.optimizer.param_groups)  # paramwise rules


def test_timm_muon_routes_non_matrix_parameters_to_its_own_fallback():
    """timm's Muon needs no visdet layout: 1-D parameters step on its AdamW fallback."""
    torch.manual_seed(0)
    net = SmallNet()
    wrapper = build_optim_wrapper(net, dict(optimizer=dict(type="timm_Muon", lr=0.02)))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    wrapper.update_params(net(torch.randn(2, 3, 8, 8)).square().mean())
    moved = {n for n, p in net.named_parameters() if not torch.equal(before[n], p)}
    assert {"fc1.weight", "conv.weight", "fc1.bias", "bn.weight"} <= moved
