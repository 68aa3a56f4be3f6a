"""Catalogued optimizers on a CUDA device: every bitsandbytes class, and every class the catalogue says needs
CUDA, built by visdet's constructor over a small conv net on the GPU and stepped.

Parametrised from the catalogue at collection time, so a new bitsandbytes class or a new CUDA-only
record joins without editing this file; what a class needs beyond ``lr`` comes from
``contract_needs.py``, as for the contract (test_contract.py, which holds the CUDA-only ones to it on the
GPU; this file drives them through visdet's constructor and train_step).
The 1-bit optimizers, which DeepSpeed's engine builds, are run through it in
tests/engine/strategies/test_deepspeed_cuda.py.

Marked ``cuda``: skipped without a CUDA device; ``bash tools/cuda_check.sh`` runs them (docs/cuda.md).
"""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.model import BaseModel

from contract_needs import needs_for
from visdet.engine.optim import Need, get_catalog
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.wrappers.train_step import train_step

pytestmark = pytest.mark.cuda

LR = 1e-3
STEPS = 5
#: Needs only several processes meet (torch.distributed, DeepSpeed's engine): not for a one-process test.
MULTI_PROCESS = {Need.DISTRIBUTED, Need.DEEPSPEED_ENGINE}
#: bitsandbytes keeps paged state only for tensors of at least this many values (optim/optimizer.py).
PAGED_MIN_NUMEL = 100_000

ENTRIES = get_catalog().entries
BNB_NAMES = [n for n, e in ENTRIES.items() if e.spec.source == "bitsandbytes"]
CUDA_NAMES = [n for n, e in ENTRIES.items() if Need.CUDA in e.spec.needs and not MULTI_PROCESS & set(e.spec.needs)]


class WideNet(BaseModel):
    """Conv + BN + two linears as an mmengine model (what visdet's train_step drives); fc1's 131,072 weights
    get 8-bit state (>= 4096 values) and paged state (>= 1e5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc1 = torch.nn.Linear(8 * 4 * 4, 1024)
        self.fc2 = torch.nn.Linear(1024, 4)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "loss"):
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(inputs))), 4)
        logits = self.fc2(torch.relu(self.fc1(x.flatten(1))))
        return {"loss": torch.nn.functional.cross_entropy(logits, labels)} if mode == "loss" else logits


def _train(name: str, device: str, steps: int = STEPS):
    """Build ``name`` through the constructor over a WideNet on ``device``; the wrapper, the model and the
    losses of ``steps`` iterations on one fixed batch through visdet's train_step, as the Runner's loops
    run them (so optimizers that update inside backward, AdaLomo, take their driver)."""
    entry = ENTRIES[name]
    reason = entry.why_not()
    assert not reason, f"the listing says {name} cannot run on this CUDA machine: {reason}"
    torch.manual_seed(0)
    model = WideNet().to(device)
    cfg: dict = dict(optimizer=dict(type=name, lr=LR, **needs_for(entry).kwargs))
    if entry.spec.low_rank:  # GaLore / APOLLO: project fc1's gradient, so the projection runs on the device
        cfg["low_rank"] = dict(target_modules=["fc1"], rank=4, update_proj_gap=2)
    wrapper = OptimWrapperConstructor(cfg)(model)
    assert isinstance(wrapper.optimizer, entry.resolve())
    gen = torch.Generator().manual_seed(1)
    data = {"inputs": torch.randn(16, 3, 8, 8, generator=gen), "labels": torch.randint(0, 4, (16,), generator=gen)}
    if callable(getattr(wrapper.optimizer, "train", None)):
        wrapper.optimizer.train()  # schedule-free classes step only in train mode (ScheduleFreeHook's job)
    losses = [float(train_step(model, data, wrapper)["loss"]) for _ in range(steps)]
    return wrapper, model, losses


def _tensor_state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v for k, v in optimizer.state[param].items() if torch.is_tensor(v) and v.numel() > 1}


@pytest.mark.parametrize("name", BNB_NAMES)
def test_bitsandbytes_optimizer_trains_on_cuda(name):
    wrapper, model, losses = _train(name, "cuda")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    state = _tensor_state(wrapper.optimizer, model.fc1.weight)
    assert state and all(t.device.type == "cuda" for t in state.values())
    if "8bit" in name:
        assert state["state1"].dtype == torch.uint8, {k: t.dtype for k, t in state.items()}
    if name.startswith("Paged"):
        assert model.fc1.weight.numel() >= PAGED_MIN_NUMEL
        assert getattr(state["state1"], "is_paged", False), "fc1's state is not in paged (unified) memory"


@pytest.mark.parametrize("name", CUDA_NAMES)
def test_cuda_only_optimizer_builds_and_steps(name):
    spec = ENTRIES[name].spec
    device = "cuda" if "cuda" in spec.devices else "cpu"  # DeepSpeed's CPU Adagrad/Lion step CPU parameters
    torch.manual_seed(0)  # as in _train: these are the weights it starts from
    start = [p.detach().clone() for p in WideNet().to(device).parameters()]
    _, model, losses = _train(name, device, steps=3)
    assert all(math.isfinite(v) for v in losses), losses
    params = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(s, p.detach()) for s, p in zip(start, params)), f"{name} moved no weight in 3 steps"
