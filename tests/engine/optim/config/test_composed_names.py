"""timm's composed names (``lookahead_<name>``) build what timm's create_optimizer_v2 builds."""
from __future__ import annotations

import pytest
import torch

from visdet.engine.optim import OptimizerConfigError
from visdet.engine.optim.config.composed_names import composed_parts
from visdet.engine.optim.config.optimizer_config import parse_optimizer_cfg

timm_optim = pytest.importorskip("timm.optim")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))


def _train(model: torch.nn.Module, step, zero) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(8):  # past Lookahead's k=6 sync
        x = torch.randn(4, 6, generator=gen)
        zero()
        model(x).pow(2).mean().backward()
        step()


def test_lookahead_adamw_trains_as_timms_own_factory_builds_it():
    from visdet.engine.optim import build_optim_wrapper

    ours, theirs = _net(), _net()
    wrapper = build_optim_wrapper(ours, dict(optimizer=dict(type="lookahead_adamw", lr=1e-2, weight_decay=0.0)))
    chain = wrapper.optimizer
    assert type(chain).__name__ == "Lookahead" and type(chain).__module__.startswith("timm")
    timm_opt = timm_optim.create_optimizer_v2(theirs, opt="lookahead_adamw", lr=1e-2, weight_decay=0.0)
    _train(ours, wrapper.optimizer.step, wrapper.optimizer.zero_grad)
    _train(theirs, timm_opt.step, timm_opt.zero_grad)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_inner_name_means_what_timm_means_and_keywords_go_to_it():
    parsed = parse_optimizer_cfg(dict(type="lookahead_sgd", lr=0.1))
    assert parsed.cls is torch.optim.SGD and parsed.kwargs["momentum"] == 0.9  # timm's sgd: momentum 0.9
    assert parsed.kwargs["lr"] == 0.1 and "lookahead_sgd" in parsed.shells[0].name
    assert composed_parts("timm:lookahead_nadamw") == "nadamw" and composed_parts("AdamW") is None


def test_an_unknown_inner_name_is_named_at_the_type_key():
    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper\.optimizer\.type: 'lookahead_adamx'.*'adamx'"):
        parse_optimizer_cfg(dict(type="lookahead_adamx", lr=0.1))
