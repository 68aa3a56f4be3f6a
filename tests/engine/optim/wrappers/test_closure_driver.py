"""The closure driver (wrappers/drivers/closure.py): SAM's two passes, LBFGS's evaluations, BN, DDP, guard, interval.

A small mmengine model with a BatchNorm layer stands in for the detector (the
shipped configs train the real one in tests/configs/test_optimizer_family_configs.py
and the exact-resume test); it records every forward, so the tests can say how
many passes ran, under autocast or not, and inside ``no_sync`` or not.
"""
from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from pytorch_optimizer import SAM, AliG
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.drivers.closure import needs_closure
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper
from visdet.engine.optim.wrappers.train_step import driver_for, train_step


class Recorder(BaseModel):
    """conv -> BN -> linear regression; records each forward (autocast on, inside no_sync) and can poison one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 1)
        self.passes: list[dict] = []
        self.poison: set[int] = set()  # 1-based forward numbers whose loss is NaN
        self.syncing = True

    def forward(self, inputs, targets=None, mode="loss"):
        self.passes.append({"autocast": torch.is_autocast_enabled("cpu"), "sync": self.syncing})
        out = self.fc(self.bn(self.conv(inputs)).mean((2, 3))).squeeze(1)
        loss = ((out.float() - targets) ** 2).mean()
        if len(self.passes) in self.poison:
            loss = loss * float("nan")
        return {"loss": loss}

    @contextmanager
    def no_sync(self):  # what DDP offers: record which passes run without the gradient all-reduce
        self.syncing = False
        try:
            yield
        finally:
            self.syncing = True


def _data(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randn(4, 1, 6, 6, generator=gen), "targets": torch.randn(4, generator=gen)}


def _sam(model: nn.Module, **kwargs) -> SAM:
    return SAM(model.parameters(), base_optimizer=torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9, **kwargs)


def _state(optimizer: torch.optim.Optimizer) -> dict:
    return copy.deepcopy(optimizer.state_dict())


def _same_state(a, b) -> bool:
    """Whether two state dicts hold the same values, tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


def test_the_driver_applies_by_record_signature_or_nesting_not_by_name():
    model = Recorder()
    assert needs_closure(_sam(model))  # catalogue record: Need.CLOSURE
    assert needs_closure(torch.optim.LBFGS(model.parameters()))  # record (and step(self, closure))
    assert needs_closure(AliG(model.parameters()))
    assert not needs_closure(torch.optim.AdamW(model.parameters()))

    class Custom(torch.optim.SGD):  # not catalogued: its step signature says it
        def step(self, closure):  # type: ignore[override]
            return super().step(closure)

    assert needs_closure(Custom(model.parameters(), lr=0.1))

    class Outer(torch.optim.Optimizer):  # a wrapper-optimizer around SAM (as Lookahead is)
        def __init__(self, optimizer):
            self.optimizer = optimizer
            self.param_groups = optimizer.param_groups
            self.state = optimizer.state
            self.defaults = optimizer.defaults

        def step(self, closure=None):
            return self.optimizer.step(closure)

    assert needs_closure(Outer(_sam(model)))
    assert driver_for(_sam(model))[0] == "closure"


def test_sam_runs_two_passes_on_one_batch_and_bn_statistics_see_it_once():
    model = Recorder()
    reference = copy.deepcopy(model)
    wrapper = OptimWrapper(_sam(model))
    data = _data()
    log_vars = train_step(model, data, wrapper)
    assert len(model.passes) == 2  # at the weights, then at the perturbed weights
    assert model.bn.num_batches_tracked.item() == 1
    # The statistics are those of the first pass alone (at the unperturbed weights).
    first_loss = reference(**reference.data_preprocessor(data, True), mode="loss")["loss"]
    assert torch.equal(model.bn.running_mean, reference.bn.running_mean)
    assert torch.equal(model.bn.running_var, reference.bn.running_var)
    assert log_vars["loss"].item() == first_loss.item()  # logged: the loss at the unperturbed weights
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert wrapper.nonfinite_skips == 0 and wrapper._inner_count == 1


def test_sam_steps_from_the_gradient_at_the_perturbed_weights():
    """The update equals SAM's own loop (first pass, step(closure)) on the same batch, bit for bit."""
    model, mine = Recorder(), Recorder()
    data = _data()
    train_step(mine, data, OptimWrapper(_sam(mine)))
    by_hand = _sam(model)

    def closure():
        by_hand.zero_grad()
        loss = model(**data)["loss"]
        loss.backward()
        return loss

    running = [b.clone() for b in model.bn.buffers()]
    closure()
    after_first = [b.clone() for b in model.bn.buffers()]
    by_hand.step(torch.enable_grad()(closure))
    for buffer, value in zip(model.bn.buffers(), after_first):  # SAM's own loop counts the batch twice
        buffer.copy_(value)
    assert not all(torch.equal(a, b) for a, b in zip(running, after_first))
    for a, b in zip(model.parameters(), mine.parameters()):
        assert torch.equal(a, b)


def test_lbfgs_takes_the_first_pass_as_its_first_evaluation():
    model = Recorder()
    wrapper = OptimWrapper(torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=1))
    start = [p.detach().clone() for p in model.parameters()]
    losses = [train_step(model, _data(), wrapper)["loss"].item() for _ in range(3)]
    assert len(model.passes) == 3  # max_iter=1: one evaluation per step, and that is the first pass
    assert model.bn.num_batches_tracked.item() == 3
    assert losses[-1] < losses[0]
    assert not all(torch.equal(s, p) for s, p in zip(start, model.parameters()))


def test_lbfgs_line_search_passes_leave_bn_statistics_alone():
    model = Recorder()
    wrapper = OptimWrapper(torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=3, line_search_fn="strong_wolfe"))
    train_step(model, _data(), wrapper)
    assert len(model.passes) > 1
    assert model.bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("poisoned", [1, 2], ids=["first-pass", "perturbed-pass"])
def test_a_nonfinite_pass_skips_the_step_with_params_and_state_unchanged(poisoned):
    model = Recorder()
    wrapper = OptimWrapper(_sam(model))
    train_step(model, _data(0), wrapper)  # a good step first: momentum state exists
    params = [p.detach().clone() for p in model.parameters()]
    state = _state(wrapper.optimizer)
    model.poison = {2 + poisoned}
    train_step(model, _data(1), wrapper)
    assert wrapper.nonfinite_skips == 1 and wrapper.consecutive_nonfinite == 1
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert _same_state(state, _state(wrapper.optimizer))
    assert all("old_p" not in s for s in wrapper.optimizer.state.values())
    train_step(model, _data(2), wrapper)  # the streak ends with a good step
    assert wrapper.consecutive_nonfinite == 0 and wrapper.nonfinite_skips == 1


def test_a_nonfinite_line_search_pass_undoes_lbfgs_state_too():
    model = Recorder()
    wrapper = OptimWrapper(torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4))
    train_step(model, _data(0), wrapper)
    params = [p.detach().clone() for p in model.parameters()]
    state = _state(wrapper.optimizer)
    model.poison = {len(model.passes) + 2}  # the second evaluation of the next step, after LBFGS moved
    train_step(model, _data(1), wrapper)
    assert wrapper.nonfinite_skips == 1
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert _same_state(state, _state(wrapper.optimizer))


def test_the_first_pass_skips_gradient_sync_only_where_the_update_does_not_use_it():
    model = Recorder()
    train_step(model, _data(), OptimWrapper(_sam(model)))
    assert [p["sync"] for p in model.passes] == [False, True]  # perturbation gradient local; update's all-reduced
    model = Recorder()
    train_step(model, _data(), OptimWrapper(_sam(model), closure_interval=2))
    train_step(model, _data(), OptimWrapper(_sam(model), closure_interval=2))
    # Interval: step 0 perturbs (2 passes); on the plain step 1 the one pass is the update's, so it syncs.
    assert [p["sync"] for p in model.passes][:2] == [False, True]


def test_closure_interval_perturbs_every_nth_step_and_steps_the_base_optimizer_between():
    model = Recorder()
    wrapper = OptimWrapper(_sam(model), closure_interval=3)
    counts = []
    for i in range(6):
        before = len(model.passes)
        params = [p.detach().clone() for p in model.parameters()]
        train_step(model, _data(i), wrapper)
        counts.append(len(model.passes) - before)
        assert not all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert counts == [2, 1, 1, 2, 1, 1]
    assert [p["sync"] for p in model.passes][2:4] == [True, True]


def test_bfloat16_autocast_covers_every_pass():
    model = Recorder()
    wrapper = AmpOptimWrapper(optimizer=_sam(model), dtype="bfloat16")
    train_step(model, _data(), wrapper)
    assert [p["autocast"] for p in model.passes] == [True, True]


def test_norm_clipping_clips_the_gradient_the_update_uses():
    model = Recorder()
    wrapper = OptimWrapper(torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=1), clip_grad=dict(max_norm=1e-3))
    start = [p.detach().clone() for p in model.parameters()]
    train_step(model, _data(), wrapper)
    moved = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(model.parameters(), start)))
    # LBFGS's first step is lr * min(1, 1/|g|_1) * g: with |g| clipped to 1e-3 it moves by at most 1e-3.
    assert 0 < moved.item() <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize(("wrapper_cfg", "optimizer", "key"), [
    ({"accumulative_counts": 2}, {"type": "LBFGS", "lr": 0.1}, "optim_wrapper.accumulative_counts"),
    ({"type": "AmpOptimWrapper", "dtype": "float16"}, {"type": "AliG"}, "optim_wrapper.dtype"),
    ({"closure_interval": 0}, {"type": "LBFGS"}, "optim_wrapper.closure_interval"),
    ({"closure_interval": 2}, {"type": "LBFGS"}, "optim_wrapper.closure_interval"),
    ({"closure_interval": 2}, {"type": "AdamW", "lr": 1e-3}, "optim_wrapper.closure_interval"),
])
def test_config_time_refusals_name_the_key(wrapper_cfg, optimizer, key):
    with pytest.raises(OptimizerConfigError) as raised:
        OptimWrapperConstructor({"type": "OptimWrapper", **wrapper_cfg, "optimizer": optimizer})
    assert raised.value.key == key, str(raised.value)


def test_a_directly_built_wrapper_refuses_accumulation_at_its_first_step():
    model = Recorder()
    wrapper = OptimWrapper(_sam(model), accumulative_counts=2)
    with pytest.raises(OptimizerConfigError, match="accumulative_counts"):
        train_step(model, _data(), wrapper)


def test_the_preflight_refuses_the_shipped_lbfgs_config_with_accumulation():
    """tools/train.py's check (engine/preflight.py) runs the constructor's checks: exit 2 before any training."""
    from mmengine.config import Config

    from visdet.engine.preflight import check_optim_wrapper
    from testutils import REPO

    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_lbfgs.py"))
    check_optim_wrapper(cfg)  # as shipped: accepted
    cfg.optim_wrapper.accumulative_counts = 2
    with pytest.raises(OptimizerConfigError, match="must be 1 for LBFGS") as raised:
        check_optim_wrapper(cfg)
    assert raised.value.key == "optim_wrapper.accumulative_counts"


@pytest.mark.parametrize("strategy", ["DeepSpeedStrategy", "FSDPStrategy"])
def test_strategies_refuse_closure_optimizers_at_check_time(strategy):
    from visdet.engine.strategies.checks import check_strategy_config
    from visdet.engine.strategies.names import StrategyConfigError

    cfg = {"runner_type": "FlexibleRunner", "strategy": {"type": strategy},
           "optim_wrapper": {"optimizer": {"type": "Lookahead", "optimizer": {"type": "AliG"}}}}
    with pytest.raises(StrategyConfigError, match="AliG re-evaluates the loss") as raised:
        check_strategy_config(cfg)
    assert raised.value.key == "optim_wrapper.optimizer.optimizer.type"


@pytest.mark.long  # two fresh processes importing visdet: 60-75 s here on 2 busy cores; the default run has the fake
@pytest.mark.parametrize("kind", ["SAM", "LBFGS"])  # no_sync test above
def test_two_gloo_ranks_stay_identical_and_skip_sync_only_on_the_first_pass(tmp_path, kind):
    script = Path(__file__).with_name("closure_ddp_run.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init"), kind],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for r in range(2)]
    outputs = [rank.communicate(timeout=300) for rank in ranks]
    for rank, (_, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err[-3000:]
    line = outputs[0][0].strip().splitlines()[-1]
    assert line.startswith("diff=0.0 "), line  # the replicas did not drift apart (different batches per rank)
    synced = ast.literal_eval(line.split("synced=")[1].split(" moved=")[0])
    if kind == "SAM":  # per step: perturbation pass local, the update's pass all-reduced
        assert synced == [False, True] * 3
    else:  # LBFGS: the first pass local (recomputed by its own first closure call), every evaluation all-reduced
        assert synced[0] is False and synced[1] is True and synced.count(False) == 3
