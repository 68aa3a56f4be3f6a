"""grokadamw as a source: HF's optim="grokadamw" builds GrokAdamW through visdet's constructor, and the
quirks its catalogue notes state (state kept in param_groups, signal 0 from a config) are what it does."""
from __future__ import annotations

import logging

import pytest
import torch

from testutils import SmallNet, run_python
from visdet.engine.optim import get_catalog
from visdet.engine.optim.wrappers.builder import build_optim_wrapper

# An optional source (`.[grokadamw]`, installed in CI). Imported through the catalogue, as a build does:
# a bare `import grokadamw` would configure the root logger for the rest of the test run.
ENTRY = get_catalog().entries["GrokAdamW"]
pytestmark = pytest.mark.skipif(not ENTRY.present, reason="grokadamw is not installed")


def _wrapper(net: torch.nn.Module, **kwargs):
    return build_optim_wrapper(net, dict(optimizer=dict(type="grokadamw", lr=1e-3, **kwargs)))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:CUDA is not available:UserWarning")
def test_hf_spelling_builds_grokadamw_and_trains_a_step():
    torch.manual_seed(0)
    net = SmallNet()
    wrapper = _wrapper(net)
    assert type(wrapper.optimizer) is ENTRY.resolve()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    wrapper.update_params(net(torch.randn(2, 3, 8, 8)).square().mean())
    assert all(not torch.equal(before[n], p) for n, p in net.named_parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:CUDA is not available:UserWarning")
def test_its_moments_live_in_param_groups_as_the_listing_says():
    """Why a resume restarts its moments: optimizer.state stays empty. If a release moves them into
    optimizer.state, this fails: drop the note and the contract's breaks entry."""
    net = SmallNet()
    wrapper = _wrapper(net)
    wrapper.update_params(net(torch.randn(2, 3, 8, 8)).square().mean())
    assert len(wrapper.optimizer.state) == 0
    assert sum(len(g.get("state", {})) for g in wrapper.optimizer.param_groups) == len(list(net.parameters()))
    notes = get_catalog().entries["GrokAdamW"].spec.notes
    assert "restarts its moments" in notes and "grokking signal is 0" in notes


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:CUDA is not available:UserWarning")
def test_a_non_finite_loss_is_skipped_with_params_and_state_untouched():
    net = SmallNet()
    wrapper = _wrapper(net)
    wrapper.update_params(net(torch.randn(2, 3, 8, 8)).square().mean())
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    moments = [{k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
               for g in wrapper.optimizer.param_groups for s in g["state"].values()]
    wrapper.update_params(net(torch.randn(2, 3, 8, 8)).square().mean() * float("inf"))
    assert wrapper.nonfinite_skips == 1
    assert all(torch.equal(params[n], p) for n, p in net.named_parameters())
    after = [s for g in wrapper.optimizer.param_groups for s in g["state"].values()]
    assert all(torch.equal(v, s[k]) for m, s in zip(moments, after) for k, v in m.items())


def test_its_import_leaves_the_root_logger_as_it_was():
    """grokadamw 0.1 calls logging.basicConfig(level=INFO) at import; visdet's quiet import undoes it."""
    result = run_python("""
        import logging
        from visdet.utils.quiet_import import quiet_import
        quiet_import("grokadamw")
        print(logging.getLogger().handlers, logging.getLogger().level)
        logging.getLogger("some.library").info("not shown")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[] {logging.WARNING}" and "not shown" not in result.stderr
