"""bitsandbytes' 8-bit optimizers on CPU: the measured slowness is listed and logged; min_8bit_size is checked
and works."""
from __future__ import annotations

import logging

import pytest
import torch

from visdet.engine.optim import list_optimizers
from visdet.engine.optim import registry as registration
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError


class TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.small = torch.nn.Linear(64, 64, bias=False)  # 4096 values
        self.large = torch.nn.Linear(128, 128, bias=False)  # 16384 values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.large(torch.nn.functional.pad(self.small(x), (0, 64)))


def _state_dtypes(min_8bit_size: int | None) -> dict[str, torch.dtype]:
    model = TwoLayers()
    extra = {} if min_8bit_size is None else {"min_8bit_size": min_8bit_size}
    wrapper = OptimWrapperConstructor(dict(optimizer=dict(type="AdamW8bit", lr=1e-3, **extra)))(model)
    wrapper.update_params(model(torch.randn(4, 64)).square().mean())
    return {name: wrapper.optimizer.state[p]["state1"].dtype for name, p in model.named_parameters()}


def test_min_8bit_size_decides_which_tensors_get_8bit_state():
    assert _state_dtypes(None) == {"small.weight": torch.uint8, "large.weight": torch.uint8}  # default 4096
    assert _state_dtypes(8192) == {"small.weight": torch.float32, "large.weight": torch.uint8}
    assert _state_dtypes(100_000) == {"small.weight": torch.float32, "large.weight": torch.float32}


@pytest.mark.parametrize("value", [0, -5, 4096.0, "4096", True])
def test_min_8bit_size_must_be_a_positive_integer(value):
    with pytest.raises(OptimizerConfigError, match="min_8bit_size must be an integer >= 1") as raised:
        OptimWrapperConstructor(dict(optimizer=dict(type="AdamW8bit", lr=1e-3, min_8bit_size=value)))
    assert raised.value.key == "optim_wrapper.optimizer.min_8bit_size"


def test_eight_bit_listing_and_build_log_give_the_measured_cpu_cost(monkeypatch, caplog):
    for info in [i for i in list_optimizers("*8bit") if i.source == "bitsandbytes"]:
        assert "ms" in info.notes and "benchmarks/bnb_cpu_step.py" in info.notes and "min_8bit_size" in info.notes
    assert "benchmarks/bnb_cpu_step.py" not in list_optimizers("bnb_AdamW")[0].notes  # 32-bit state: no such cost
    monkeypatch.setattr(registration, "_NOTES_LOGGED", set())
    with caplog.at_level(logging.WARNING, logger="visdet.engine.optim"):
        for _ in range(2):
            OptimWrapperConstructor(dict(optimizer=dict(type="AdamW8bit", lr=1e-3)))(TwoLayers())
    records = [r for r in caplog.records if "bnb_cpu_step.py" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].getMessage().startswith("AdamW8bit: ") and "slow on CPU" in records[0].getMessage()
