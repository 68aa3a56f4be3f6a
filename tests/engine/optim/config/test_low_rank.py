"""optim_wrapper.low_rank: GaLore and APOLLO project the chosen modules' 2-D weights; mistakes fail at build."""
from __future__ import annotations

import pytest
import torch

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.engine.optim.config.low_rank import family
from visdet.engine.optim.errors import OptimizerConfigError


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 16))
        self.cls = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1)
        return self.cls(torch.relu(self.head(x)))


def build(optimizer: dict, low_rank: dict | None = None, model: torch.nn.Module | None = None):
    cfg = dict(optimizer=optimizer)
    if low_rank is not None:
        cfg["low_rank"] = low_rank
    model = model or Net()
    return model, OptimWrapperConstructor(cfg)(model)


def _step(model, wrapper, steps: int = 2) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 4, (8,))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        wrapper.update_params(loss)


@pytest.mark.parametrize("optimizer, projector_keys", [
    (dict(type="GaLoreAdamW", lr=1e-2), dict(rank=4, update_proj_gap=1, scale=0.25, proj_type="std")),
    (dict(type="APOLLOAdamW", lr=1e-2), dict(rank=4, update_proj_gap=1, scale=1.0, proj_type="std",
                                            proj="random", scale_type="channel")),
])
def test_targets_two_dimensional_weights_are_projected_and_the_rest_is_plain(optimizer, projector_keys):
    model, wrapper = build(optimizer, dict(target_modules=["head"], rank=4, update_proj_gap=1))
    opt = wrapper.optimizer
    projected = [g for g in opt.param_groups if "rank" in g]
    assert len(projected) == 1
    assert {k: projected[0][k] for k in projector_keys} == projector_keys
    assert {id(p) for p in projected[0]["params"]} == {id(model.head[0].weight), id(model.head[2].weight)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _step(model, wrapper)
    for name in ("head.0.weight", "head.2.weight"):
        state = opt.state[model.get_parameter(name)]
        assert "projector" in state, name
        rank_dim = min(state["exp_avg"].shape)  # Adam moments live in the rank-4 space
        assert rank_dim == 4 and state["exp_avg"].numel() < model.get_parameter(name).numel()
    for name in ("cls.weight", "head.0.bias", "conv.weight"):
        state = opt.state[model.get_parameter(name)]
        assert "projector" not in state and state["exp_avg"].shape == model.get_parameter(name).shape
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if before[n].norm() > 0)


@pytest.mark.parametrize("low_rank, key, text", [
    (dict(target_modules=["haed"]), "optim_wrapper.low_rank.target_modules",
     "no module is called 'haed'; did you mean 'head'"),
    (dict(target_modules=["bn"]), "optim_wrapper.low_rank.target_modules", "'bn' has no trainable 2-D weight"),
    (dict(target_modules=["head"], rank=16), "optim_wrapper.low_rank.rank",
     "rank 16 is not below the smaller side of 'head.2.weight' (16, 24)"),
    (dict(target_modules=["head"], rank=0), "optim_wrapper.low_rank.rank", "rank must be an integer >= 1"),
    (dict(target_modules=["head"], ranks=4), "optim_wrapper.low_rank.ranks",
     "unknown key 'ranks'; did you mean 'rank'"),
    (dict(target_modules=["head"], proj_type="diagonal"), "optim_wrapper.low_rank.proj_type",
     "proj_type must be one of"),
    (dict(target_modules="head"), "optim_wrapper.low_rank.target_modules", "must be a non-empty list"),
    (dict(target_modules=["head"], update_proj_gap=0.5), "optim_wrapper.low_rank.update_proj_gap", "integer >= 1"),
])
def test_a_bad_low_rank_config_fails_at_build_naming_the_key(low_rank, key, text):
    with pytest.raises(OptimizerConfigError) as raised:
        build(dict(type="GaLoreAdamW", lr=1e-3), low_rank)
    assert raised.value.key == key
    assert text in str(raised.value)


def test_low_rank_with_an_optimizer_that_does_not_project_is_refused():
    with pytest.raises(OptimizerConfigError, match="AdamW does not project gradients") as raised:
        OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3), low_rank=dict(target_modules=["head"])))
    assert raised.value.key == "optim_wrapper.low_rank"


def test_galore_without_low_rank_warns_that_it_projects_nothing():
    with pytest.warns(OptimizerConfigWarning, match="projects nothing"):
        model, wrapper = build(dict(type="GaLoreAdamW", lr=1e-3))
    assert all("rank" not in g for g in wrapper.optimizer.param_groups)


@pytest.mark.parametrize("name, expected", [
    ("GaLoreAdamW", "galore"), ("GaLoreAdafactor", "galore"), ("APOLLOAdamW", "apollo"), ("QAPOLLOAdamW", "apollo"),
    ("AdamW", None), ("SGD", None),
])
def test_family_comes_from_the_catalogue_record(name, expected):
    """apollo-torch exports its own GaLore classes too; its APOLLO ones are classes named AdamW."""
    from visdet.registry import OPTIMIZERS

    assert family(OPTIMIZERS.get(name)) == expected


def test_a_class_the_catalogue_does_not_know_projects_nothing():
    class Custom(torch.optim.AdamW):
        pass

    assert family(Custom) is None
