"""Every backend optimizer that the listing says runs here really steps; the rest fail clearly."""
from __future__ import annotations

import math

import pytest
import torch

from testutils import train_steps
from visdet.engine.optim import OptimizerUnavailableError, list_optimizers
from visdet.registry import OPTIMIZERS

BACKENDS = {"bitsandbytes", "deepspeed", "dadaptation"}
RUNNABLE = [i for i in list_optimizers() if i.source in BACKENDS and i.runs_here]
NOT_RUNNABLE = [i for i in list_optimizers() if i.source in BACKENDS and not i.runs_here]

# Arguments some optimizers strictly need, or need to move at all in 3 steps.
EXTRA_KWARGS = {"LARS": {"momentum": 0.9}, "LARS8bit": {"momentum": 0.9}, "LARS32bit": {"momentum": 0.9},
                "PytorchLARS": {"momentum": 0.9}, "bnb_SGD": {"momentum": 0.9}, "SGD8bit": {"momentum": 0.9},
                "SGD32bit": {"momentum": 0.9}}
LR = {"dadaptation": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("info", RUNNABLE, ids=lambda i: i.name)
def test_runnable_backend_optimizer_takes_a_real_step(info, small_net):
    before = [p.detach().clone() for p in small_net.parameters()]
    optimizer = OPTIMIZERS.build(
        dict(type=info.name, params=small_net.parameters(), lr=LR.get(info.source, 1e-2),
             **EXTRA_KWARGS.get(info.name, {}))
    )
    assert type(optimizer).__module__.split(".")[0] == info.source
    losses = train_steps(small_net, optimizer)
    assert all(math.isfinite(v) for v in losses)
    # Layer-wise trust ratios (LAMB, LARS) scale by the weight norm, so a
    # zero-initialised tensor (a BN bias) may legitimately stay put.
    moved = [not torch.equal(b, p) for b, p in zip(before, small_net.parameters()) if b.norm() > 0]
    assert all(moved), f"{info.name} left {moved.count(False)} non-zero parameter tensors unchanged"


@pytest.mark.parametrize("info", NOT_RUNNABLE, ids=lambda i: i.name)
def test_optimizer_that_cannot_run_here_fails_at_build_with_the_reason(info, small_net):
    with pytest.raises(OptimizerUnavailableError) as raised:
        OPTIMIZERS.build(dict(type=info.name, params=small_net.parameters(), lr=1e-3))
    message = str(raised.value)
    assert message == f"optim_wrapper.optimizer.type: '{info.name}' cannot run here: {info.why_not}"


def test_cpu_only_machine_marks_cuda_and_engine_optimizers_as_not_runnable():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to check the CPU-only verdicts")
    verdicts = {i.name: i for i in list_optimizers()}
    for name in ("FusedLamb", "OnebitAdam", "OnebitLamb", "ZeroOneAdam"):
        assert not verdicts[name].runs_here
    assert "CUDA" in verdicts["FusedLamb"].why_not
    assert "DeepSpeed engine" in verdicts["OnebitAdam"].why_not
    assert "torch.distributed" in verdicts["OnebitAdam"].why_not
    assert verdicts["DeepSpeedCPUAdam"].runs_here and verdicts["FusedAdam"].runs_here


# Optimizer-state size: the catalogue's figure against what a real step allocates.
STATE_CASES = {
    "AdamW": {}, "SGD": {"momentum": 0.9}, "Adagrad": {}, "RMSprop": {},
    "AdamW8bit": {}, "Lion": {}, "Lion8bit": {}, "bnb_AdamW": {}, "DAdaptAdam": {"lr": 1.0},
    "DAdaptSGD": {"lr": 1.0}, "DAdaptLion": {"lr": 1.0}, "DAdaptAdan": {"lr": 1.0},
}


@pytest.mark.parametrize("name", sorted(STATE_CASES))
def test_catalogued_state_bytes_match_a_real_step(name):
    model = torch.nn.Linear(512, 512, bias=False)  # one large tensor: 8-bit state applies
    optimizer = OPTIMIZERS.build(dict(type=name, params=model.parameters(), **{"lr": 1e-3, **STATE_CASES[name]}))
    model(torch.randn(4, 512)).square().mean().backward()
    optimizer.step()
    tensors = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    measured = sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1) / model.weight.numel()
    (info,) = list_optimizers(name)
    assert info.state_bytes_per_param == pytest.approx(measured, rel=0.02), (name, measured)
