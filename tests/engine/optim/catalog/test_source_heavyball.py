"""heavyball as a catalogue source: its names, and the gradients it consumes inside ``step()``.

heavyball sets ``p.grad = None`` while it steps (``consume_grad``). visdet's
OptimWrapper clips, logs ``grad_norm`` and checks gradients for non-finite
values before ``step()``; these tests hold that this still happens. Steps run
with torch.compile off (``force_eager``, the same maths; compiling costs seconds
a class on 2 cores): the compiled path trains the detector in
tests/configs/test_optimizer_family_configs.py (configs/faster_rcnn_heavyball_soap.py).
"""
from __future__ import annotations

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from visdet.engine.optim import OptimizerUnavailableError, get_catalog
from visdet.registry import OPTIMIZERS

heavyball = pytest.importorskip("heavyball")  # installed by tools/setup_env.sh (.[all]); CI has it


@pytest.fixture(autouse=True)
def eager():
    with torch.compiler.set_stance("force_eager"):
        yield


def test_names_follow_the_collision_rule():
    catalogue = get_catalog()
    assert catalogue.lookup("Muon").spec.source == "torch"
    assert catalogue.lookup("heavyball_Muon").spec.import_path == "heavyball.Muon"
    assert catalogue.lookup("heavyball_SOAP").spec.import_path == "heavyball.SOAP"
    assert catalogue.lookup("SOAP").spec.source == "pytorch-optimizer"
    assert catalogue.lookup("PSGDKron").spec.import_path == "heavyball.PSGDKron"
    # heavyball's __all__ leaves its base classes out; so does the catalogue.
    assert "SOAPBase" not in catalogue.entries and "PSGDBase" not in catalogue.entries
    exported = {name for name in heavyball.__all__ if isinstance(getattr(heavyball, name), type)}
    registered = {e.spec.class_name for e in catalogue.entries.values() if e.spec.source == "heavyball"}
    assert registered == exported


def test_split_opt_is_refused_with_what_to_use_instead():
    with pytest.raises(OptimizerUnavailableError, match="parameter-group layout"):
        OPTIMIZERS.build(dict(type="SplitOpt", params=[torch.nn.Parameter(torch.zeros(4))], lr=1e-3))
    assert "custom_keys" in get_catalog().lookup("SplitOpt").spec.notes


def _wrapper(model: torch.nn.Module, max_norm: float):
    init_default_scope("visdet")
    return build_optim_wrapper(model, dict(optimizer=dict(type="heavyball_SGD", lr=1e-2),
                                           clip_grad=dict(max_norm=max_norm)))


def _one_step(max_norm: float, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, object]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    wrapper = _wrapper(model, max_norm)
    before = model.weight.detach().clone()
    wrapper.update_params(model(torch.randn(16, 8)).square().mean() * scale)
    return before, model, wrapper


def test_clipping_and_grad_norm_see_the_gradients_heavyball_consumes():
    before, model, wrapper = _one_step(max_norm=1e-3)
    assert model.weight.grad is None  # heavyball consumed it inside step()
    assert MessageHub.get_current_instance().get_scalar("train/grad_norm").current() > 1e-3  # logged before
    clipped = model.weight.detach() - before
    before, model, _ = _one_step(max_norm=1e3)
    unclipped = model.weight.detach() - before
    # SGD's first update is lr x gradient: the clip to 1e-3 reached the update heavyball applied.
    assert 0 < clipped.norm() < 0.1 * unclipped.norm()


def test_a_non_finite_loss_skips_heavyballs_step_bit_identically():
    before, model, wrapper = _one_step(max_norm=1.0, scale=float("nan"))
    assert torch.equal(model.weight.detach(), before)
    assert all(not state for state in wrapper.optimizer.state.values())  # no moments were written
