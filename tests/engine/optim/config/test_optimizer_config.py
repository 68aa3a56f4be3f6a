"""parse_optimizer_cfg: one optimizer config dict checked into its class, keywords and visdet's own options."""
from __future__ import annotations

import pytest
import torch

from visdet.engine.optim import Need, OptimizerConfigError
from visdet.engine.optim.catalog.availability import assume_met
from visdet.engine.optim.config.optimizer_config import parse_optimizer_cfg

KEY = "optim_wrapper.optimizer"


def _refused(cfg, key: str, match: str, **kwargs) -> OptimizerConfigError:
    with pytest.raises(OptimizerConfigError, match=match) as raised:
        parse_optimizer_cfg(cfg, **kwargs)
    assert raised.value.key == key and str(raised.value).startswith(f"{key}: ")
    return raised.value


def test_a_plain_config_gives_the_class_and_its_keywords():
    parsed = parse_optimizer_cfg(dict(type="AdamW", lr=1e-3, weight_decay=0.01))
    assert (parsed.name, parsed.cls, parsed.kwargs, parsed.key) == ("AdamW", torch.optim.AdamW,
                                                                    {"lr": 1e-3, "weight_decay": 0.01}, KEY)
    assert not parsed.is_hybrid and parsed.inner is None and parsed.fallback is None
    assert "betas" in parsed.keywords.names and parsed.base() == (1e-3, 0.01)


def test_base_takes_the_class_default_lr_and_only_a_configured_weight_decay():
    assert parse_optimizer_cfg(dict(type="AdamW")).base() == (1e-3, None)  # AdamW's default lr; no decay set
    assert parse_optimizer_cfg(dict(type="AdamW", lr=0.5)).base() == (0.5, None)


def test_a_class_is_accepted_as_type_and_named_by_its_class_name():
    parsed = parse_optimizer_cfg(dict(type=torch.optim.SGD, lr=0.1), key="opt")
    assert (parsed.name, parsed.cls, parsed.kwargs, parsed.key) == ("SGD", torch.optim.SGD, {"lr": 0.1}, "opt")


def test_an_alias_is_checked_as_its_target_with_its_defaults_and_named_both_ways():
    parsed = parse_optimizer_cfg(dict(type="adamw_torch_fused", lr=1e-3))
    assert parsed.cls is torch.optim.AdamW and parsed.kwargs == {"fused": True, "lr": 1e-3}
    assert parsed.name == "AdamW (alias 'adamw_torch_fused')"


@pytest.mark.parametrize("cfg, key, match", [
    ([1], KEY, r"must be a dict like dict\(type='AdamW', lr=1e-4\), got \[1\]"),
    ({}, KEY, "has no 'type'; add e.g. type='AdamW'"),
    (dict(type=dict), f"{KEY}.type", "dict is not a torch.optim.Optimizer"),
    (dict(type=""), f"{KEY}.type", "type must be an optimizer name like 'AdamW', got ''"),
    (dict(type=3), f"{KEY}.type", "got 3"),
    (dict(type="AdamW", lrr=1), KEY, "AdamW got an unknown argument 'lrr'; did you mean 'lr'"),
    (dict(type="AdamW", lr=-1), f"{KEY}.lr", "lr must be >= 0"),
])
def test_bad_configs_are_refused_at_their_key(cfg, key, match):
    _refused(cfg, key, match)


def test_a_matrix_optimizer_gets_an_adamw_fallback_with_its_weight_decay_but_not_its_lr():
    parsed = parse_optimizer_cfg(dict(type="Muon", lr=0.02, weight_decay=0.05))
    assert parsed.is_hybrid and parsed.fallback.cls is torch.optim.AdamW
    assert parsed.fallback.kwargs == {"weight_decay": 0.05} and parsed.fallback.key == f"{KEY}.fallback"
    assert parse_optimizer_cfg(dict(type="Muon")).fallback.kwargs == {"weight_decay": 0.1}  # Muon's own default
    assert not parsed.flatten_conv and parsed.fallback_keys is None  # None: the routing's defaults


def test_an_lr_scaled_to_adamw_rms_is_shared_with_the_default_fallback():
    parsed = parse_optimizer_cfg(dict(type="Muon", lr=0.02, adjust_lr_fn="match_rms_adamw"))
    assert parsed.fallback.kwargs == {"weight_decay": 0.1, "lr": 0.02}


def test_hybrid_options_are_read_off_and_not_passed_to_the_class():
    parsed = parse_optimizer_cfg(dict(type="Muon", lr=0.02, fallback=dict(type="SGD", lr=0.1), flatten_conv=True,
                                      fallback_keys=[".fcs.", "fc_cls"]))
    assert parsed.kwargs == {"lr": 0.02}
    assert (parsed.fallback.cls, parsed.fallback.kwargs) == (torch.optim.SGD, {"lr": 0.1})
    assert parsed.flatten_conv is True and parsed.fallback_keys == ("fcs", "fc_cls")  # dots at the ends dropped


@pytest.mark.parametrize("cfg, key, match", [
    (dict(type="Muon", fallback=dict(type="Muon")), f"{KEY}.fallback.type", "Muon takes only matrices, so it can"),
    (dict(type="Muon", fallback=dict(type="AdamW", flatten_conv=True)), f"{KEY}.fallback",
     "a fallback optimizer cannot itself have flatten_conv"),
    (dict(type="Muon", fallback=dict(type="AdamW", lrr=1)), f"{KEY}.fallback", "AdamW got an unknown argument 'lrr'"),
    (dict(type="Muon", fallback=[1]), f"{KEY}.fallback", "must be a dict like"),
    (dict(type="Muon", flatten_conv=1), f"{KEY}.flatten_conv", "flatten_conv must be True or False, got 1"),
    (dict(type="Muon", fallback_keys="fc_cls"), f"{KEY}.fallback_keys", r"got the string 'fc_cls'; write \['fc_cls'\]"),
    (dict(type="Muon", fallback_keys=["fc", ". "]), f"{KEY}.fallback_keys", "must be a list of parameter-name parts"),
])
def test_bad_hybrid_options_are_refused_at_their_key(cfg, key, match):
    _refused(cfg, key, match)


def test_a_config_parsed_as_a_fallback_cannot_carry_hybrid_options():
    _refused(dict(type="AdamW", fallback=dict(type="SGD")), KEY, "a fallback optimizer cannot itself have fallback",
             allow_hybrid=False)


def test_zero_redundancy_needs_torch_distributed_before_anything_else():
    _refused(dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW"), f"{KEY}.type",
             "'ZeroRedundancyOptimizer' cannot run here: needs torch.distributed initialised")


def test_zero_redundancy_shards_a_registered_optimizer_checked_with_its_own_keywords():
    with assume_met(Need.DISTRIBUTED):
        parsed = parse_optimizer_cfg(dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW", lr=1e-3,
                                          weight_decay=0.1, overlap_with_ddp=False))
    assert parsed.inner.cls is torch.optim.AdamW and parsed.inner.key == f"{KEY}.optimizer_type"
    assert parsed.inner.kwargs == {"lr": 1e-3, "weight_decay": 0.1}
    assert parsed.kwargs == {"overlap_with_ddp": False, "lr": 1e-3, "weight_decay": 0.1}
    names = set(parsed.keywords.names)
    assert {"overlap_with_ddp", "betas"} <= names and "optimizer_class" not in names
    assert parsed.base() == (1e-3, 0.1)


@pytest.mark.parametrize("cfg, key, match", [
    (dict(type="ZeroRedundancyOptimizer"), KEY, "needs optimizer_type, the optimizer to shard"),
    (dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW", optimizer_class="AdamW"), KEY,
     "give optimizer_type or optimizer_class, not both"),
    (dict(type="ZeroRedundancyOptimizer", optimizer_type="Muon"), f"{KEY}.optimizer_type",
     "Muon needs a fallback and cannot be sharded"),
    (dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW", lrr=1), f"{KEY}.optimizer_type",
     "AdamW got an unknown argument 'lrr'"),
])
def test_bad_zero_redundancy_configs_are_refused_at_their_key(cfg, key, match):
    with assume_met(Need.DISTRIBUTED):
        _refused(cfg, key, match)


# --- a downstream project's registry (custom scope), found as mmengine's build finds it -----------

@pytest.fixture
def project_registry(request):
    """A downstream ``Registry('optimizer', parent=..., scope=...)`` holding ``MyOpt``; removed afterwards."""
    import mmengine.registry
    from mmengine.registry import Registry

    import visdet.registry

    parent = {"root": mmengine.registry.OPTIMIZERS, "visdet": visdet.registry.OPTIMIZERS}[request.param]
    scope = f"myproj_{request.param}"
    registry = Registry("optimizer", parent=parent, scope=scope)

    @registry.register_module()
    class MyOpt(torch.optim.SGD):
        pass

    yield scope, MyOpt
    del parent._children[scope]


@pytest.mark.parametrize("project_registry", ["root", "visdet"], indirect=True)
def test_a_project_optimizer_is_found_under_its_default_scope_and_by_scoped_name(project_registry):
    from mmengine.registry import DefaultScope

    from visdet.engine.optim import DefaultOptimWrapperConstructor

    scope, cls = project_registry
    _refused(dict(type="MyOpt", lr=0.1), f"{KEY}.type", "unknown optimizer type 'MyOpt'")  # not in visdet's scope
    with DefaultScope.overwrite_default_scope(scope):
        assert parse_optimizer_cfg(dict(type="MyOpt", lr=0.1, momentum=0.9)).cls is cls
        assert parse_optimizer_cfg(dict(type="AdamW")).cls is torch.optim.AdamW  # visdet's names still resolve
        _refused(dict(type="MyOpt", lr=0.1, momentun=0.9), KEY, "unknown argument 'momentun'")  # its keywords checked
        _refused(dict(type="MyOpd", lr=0.1), f"{KEY}.type", "unknown optimizer type 'MyOpd'; did you mean 'MyOpt'")
        wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(type="MyOpt", lr=0.1)))(torch.nn.Linear(2, 2))
        assert type(wrapper.optimizer) is cls
    assert parse_optimizer_cfg(dict(type=f"{scope}.MyOpt", lr=0.1)).cls is cls  # 'myproj.MyOpt', any scope


def test_an_unknown_default_scope_leaves_visdets_lookup_and_errors_alone():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("no_such_project_here"):
        assert parse_optimizer_cfg(dict(type="SGD", lr=0.1)).cls is torch.optim.SGD
        _refused(dict(type="AdamWW"), f"{KEY}.type", "unknown optimizer type 'AdamWW'; did you mean 'AdamW'")


def test_mmengines_own_custom_scope_case_builds():
    """mmengine's test_default_optimizer_constructor, last part: a scope with a space, ``model_params`` first."""
    import mmengine.registry
    from mmengine.registry import DefaultScope, Registry

    from visdet.engine.optim import DefaultOptimWrapperConstructor

    custom = Registry("custom optimizer", scope="custom optimizer", parent=mmengine.registry.OPTIMIZERS)

    class CustomOptimizer(torch.optim.SGD):
        def __init__(self, model_params, *args, **kwargs):
            super().__init__(model_params, *args, **kwargs)

    custom.register_module()(CustomOptimizer)
    try:
        with DefaultScope.overwrite_default_scope("custom optimizer"):
            wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(type="CustomOptimizer", lr=0.1)))(
                torch.nn.Conv2d(3, 4, 3))
        assert type(wrapper.optimizer) is CustomOptimizer and wrapper.optimizer.param_groups[0]["lr"] == 0.1
    finally:
        mmengine.registry.OPTIMIZERS.children.pop("custom optimizer")


@pytest.mark.parametrize("project_registry", ["root"], indirect=True)
def test_the_preflight_check_finds_a_project_optimizer_under_the_configs_default_scope(project_registry):
    from pathlib import Path

    from mmengine.config import Config

    from visdet.engine.preflight import check_config
    from visdet.errors import ConfigError

    scope, _ = project_registry
    small = Path(__file__).resolve().parents[4] / "configs" / "faster_rcnn_r18_small.py"
    cfg = Config.fromfile(str(small)).to_dict()
    cfg["optim_wrapper"] = dict(optimizer=dict(type="MyOpt", lr=0.1, momentum=0.9))
    check_config({**cfg, "default_scope": scope})
    check_config({**cfg, "optim_wrapper": dict(optimizer=dict(type=f"{scope}.MyOpt", lr=0.1))})
    with pytest.raises(ConfigError, match="optim_wrapper.optimizer.type: unknown optimizer type 'MyOpt'"):
        check_config(cfg)  # visdet's scope: not visdet's name
