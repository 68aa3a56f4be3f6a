"""Aliases from other ecosystems: every entry of the table builds what it says, or says why not."""
from __future__ import annotations

import functools
import json
import logging

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from testutils import SmallNet, run_python
from visdet.engine.optim import registry as registration
from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.build.model_argument import takes_model, updates_in_backward
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.engine.optim.catalog.listing import list_optimizers
from visdet.engine.optim.wrappers.drivers import second_order
from visdet.registry import OPTIMIZERS

ALIASES = [item for item in aliases.table() if isinstance(item, aliases.Alias)]
REFUSALS = [item for item in aliases.table() if isinstance(item, aliases.Refusal)]


@pytest.fixture
def visdet_scope():
    with DefaultScope.overwrite_default_scope("visdet"):
        yield


#: What a direct registry build needs on this machine beyond lr (visdet's constructor passes it itself).
CPU_KWARGS = {aliases.Target("torch-optimi", "StableAdamW"): {"triton": False}}  # its Triton kernel wants CUDA


def _matrix() -> list[torch.nn.Parameter]:
    """One 64x64 weight: 2-D for Muon/GaLore, 4096 values so bitsandbytes keeps 8-bit state."""
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(64, 64) * 0.1)]


def _setting(optimizer: torch.optim.Optimizer, key: str):
    """Where an optimizer keeps a constructor keyword: its defaults or its first group."""
    if key in optimizer.defaults:
        return optimizer.defaults[key]
    if key in optimizer.param_groups[0]:
        return optimizer.param_groups[0][key]
    return getattr(optimizer, key)  # DeepSpeed's FusedAdam keeps adam_w_mode as an attribute


def _step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # schedule-free optimizers refuse to step in eval mode
    if isinstance(optimizer, torch.optim.SparseAdam):  # takes sparse gradients only
        for p in params:
            p.grad = (2 * p).detach().to_sparse()
    elif updates_in_backward(optimizer):  # LOMO's family: the update runs in its own backward
        optimizer.fused_backward(sum((p**2).sum() for p in params), optimizer.param_groups[0]["lr"])
        return
    else:  # a second-order optimizer (timm's adahessian) gets the graph its driver keeps
        sum((p**2).sum() for p in params).backward(create_graph=second_order.applies_to(optimizer))
    optimizer.step()


@pytest.mark.parametrize("item", ALIASES, ids=lambda a: a.qualified)
def test_alias_builds_its_target_with_its_defaults_or_says_why_not(item):
    entry = registration.get_catalog().by_class(item.target)
    params = _matrix()
    cfg = dict(type=item.qualified, params=params, lr=1e-3, **CPU_KWARGS.get(item.target, {}))
    if entry is None:
        with pytest.raises(OptimizerUnavailableError, match=f"maps to {item.target}, which is not known here"):
            OPTIMIZERS.build(cfg)
        return
    reason = entry.why_not(frozenset(item.defaults) | {"lr", "params"})
    if reason:
        with pytest.raises(OptimizerUnavailableError) as info:
            OPTIMIZERS.build(cfg)
        assert f"'{item.name}'" in str(info.value) and f"'{entry.spec.name}'" in str(info.value)
        assert str(info.value).endswith(f"which cannot run here: {reason}")
        return
    if takes_model(entry.resolve()):  # built over the model, as visdet's constructor does
        module = torch.nn.Module()
        module.weight = params[0]
        cfg = {**{k: v for k, v in cfg.items() if k != "params"}, "model": module}
    optimizer = OPTIMIZERS.build(cfg)
    assert type(optimizer) is entry.resolve()
    for key, value in item.defaults.items():
        if key == "betas" and "beta1" in optimizer.param_groups[0]:  # timm's Adafactor keeps only betas[0], as beta1
            key, value = "beta1", value[0]
        assert _setting(optimizer, key) == value, key
    _step(optimizer, params)
    assert torch.isfinite(params[0]).all()
    if "8bit" in item.name:  # 8-bit state, as the name says
        # torchao's quantised state is a tensor subclass reporting fp32; its codes are the uint8 data.
        dtypes = {getattr(t, "codes", t).dtype for s in optimizer.state.values() for t in s.values()
                  if isinstance(t, torch.Tensor)}
        assert torch.uint8 in dtypes, dtypes
    # The bare spelling means this alias unless an earlier ecosystem defines it too.
    assert (aliases.find(item.name) is item) == aliases.is_bare_winner(item)


@pytest.mark.parametrize("item", REFUSALS, ids=lambda r: r.qualified)
def test_refused_spelling_says_what_to_use_instead(item):
    with pytest.raises(OptimizerConfigError) as info:
        OPTIMIZERS.build(dict(type=item.qualified, params=_matrix(), lr=1e-3))
    assert not isinstance(info.value, OptimizerUnavailableError)
    assert str(info.value) == (
        f"optim_wrapper.optimizer.type: '{item.name}' ({aliases.ORIGINS[item.origin]}) is not accepted as an alias: "
        f"{item.reason}"
    )
    assert "use" in item.reason or "write" in item.reason
    assert item.qualified not in OPTIMIZERS and OPTIMIZERS.get(item.qualified) is None


def test_explicit_keywords_win_over_alias_defaults(visdet_scope):
    optimizer = OPTIMIZERS.build(dict(type="timm:sgd", params=_matrix(), lr=0.1, nesterov=False, momentum=0.5))
    assert optimizer.defaults["nesterov"] is False and optimizer.defaults["momentum"] == 0.5
    wrapper = build_optim_wrapper(SmallNet(), dict(optimizer=dict(type="adamw_torch_fused", lr=1e-3, fused=False)))
    assert wrapper.optimizer.defaults["fused"] is False


def test_collisions_follow_the_fixed_precedence():
    assert aliases.PRECEDENCE == ("hf", "timm", "llmfoundry")
    plain = OPTIMIZERS.build(dict(type="sgd", params=_matrix(), lr=0.1))  # HF's: torch's SGD as it is
    assert plain.defaults["nesterov"] is False and plain.defaults["momentum"] == 0
    timm_sgd = OPTIMIZERS.build(dict(type="timm:sgd", params=_matrix(), lr=0.1))
    assert timm_sgd.defaults["nesterov"] is True and timm_sgd.defaults["momentum"] == 0.9
    assert OPTIMIZERS.expand_alias(dict(type="hf:sgd")) == OPTIMIZERS.expand_alias(dict(type="sgd"))
    assert OPTIMIZERS.expand_alias(dict(type="adafactor"))["scale_parameter"] is False  # HF's
    assert OPTIMIZERS.expand_alias(dict(type="timm:adafactor"))["scale_parameter"] is True
    assert OPTIMIZERS.expand_alias(dict(type="timm:rmsprop"))["alpha"] == 0.9
    assert "alpha" not in OPTIMIZERS.expand_alias(dict(type="rmsprop"))


def test_an_alias_never_shadows_a_registry_name():
    catalogue = registration.get_catalog().entries
    assert not [item.name for item in aliases.table() if item.name in catalogue]

    class Mine(torch.optim.SGD):
        pass

    OPTIMIZERS.register_module(name="momentum", module=Mine)  # a user's class under a timm spelling
    try:
        assert OPTIMIZERS.get("momentum") is Mine
        assert type(OPTIMIZERS.build(dict(type="momentum", params=_matrix(), lr=0.1))) is Mine
        assert OPTIMIZERS.get("timm:momentum").func is torch.optim.SGD  # still reachable qualified
    finally:
        del OPTIMIZERS._module_dict["momentum"]


def test_get_and_contains_accept_aliases():
    assert OPTIMIZERS.get("adamw_torch") is torch.optim.AdamW
    fused = OPTIMIZERS.get("adamw_torch_fused")
    assert isinstance(fused, functools.partial) and fused.func is torch.optim.AdamW
    assert fused.keywords == {"fused": True}
    assert "adamw_torch_fused" in OPTIMIZERS and "pytorch_adamw" in OPTIMIZERS and "timm:sgd" in OPTIMIZERS
    assert "decoupled_adamw" not in OPTIMIZERS and "adamw_torch_fusd" not in OPTIMIZERS
    assert OPTIMIZERS.info("adamw_torch_fused").name == "AdamW"


def test_mmengines_own_constructor_applies_alias_defaults(visdet_scope):
    wrapper = build_optim_wrapper(SmallNet(), dict(
        constructor="mmengine.DefaultOptimWrapperConstructor", optimizer=dict(type="timm:sgd", lr=0.1)))
    assert type(wrapper.optimizer) is torch.optim.SGD
    assert wrapper.optimizer.defaults["nesterov"] is True and wrapper.optimizer.defaults["momentum"] == 0.9


def test_validation_checks_the_target_class_and_the_merged_keywords(visdet_scope):
    with pytest.raises(OptimizerConfigError) as info:
        build_optim_wrapper(SmallNet(), dict(optimizer=dict(type="adamw_torch", lr=1e-3, learning_rate=1)))
    assert str(info.value).startswith(
        "optim_wrapper.optimizer: AdamW (alias 'adamw_torch') got an unknown argument 'learning_rate'; "
        "did you mean 'lr'?")
    with pytest.raises(OptimizerConfigError, match=r"momentum must be a number, got the string '0.9'"):
        build_optim_wrapper(SmallNet(), dict(optimizer=dict(type="timm:sgd", lr=1e-3, momentum="0.9")))
    # ZeroRedundancyOptimizer's inner optimizer and Muon's fallback accept aliases too.
    wrapper = build_optim_wrapper(SmallNet(), dict(optimizer=dict(
        type="Muon", lr=0.02, fallback=dict(type="timm:sgd", lr=0.1))))
    fallback = wrapper.optimizer.optimizers["fallback"]
    assert type(fallback) is torch.optim.SGD and fallback.defaults["nesterov"] is True


def test_unknown_alias_gets_a_suggestion():
    expected = r"unknown optimizer type 'adamw_torch_fusd'; did you mean 'adamw_torch_fused'"
    with pytest.raises(OptimizerConfigError, match=expected):
        OPTIMIZERS.build(dict(type="adamw_torch_fusd", params=_matrix(), lr=1e-3))
    with pytest.raises(OptimizerConfigError, match=r"unknown optimizer type 'timm:sgdd'; did you mean 'timm:sgd'"):
        OPTIMIZERS.build(dict(type="timm:sgdd", params=_matrix(), lr=1e-3))


def test_unavailable_target_names_alias_and_target():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA, where FusedLamb cannot run")
    with pytest.raises(OptimizerUnavailableError) as info:
        OPTIMIZERS.build(dict(type="fusedlamb", params=_matrix(), lr=1e-3))
    assert str(info.value) == (
        "optim_wrapper.optimizer.type: 'fusedlamb' (timm create_optimizer_v2) maps to 'FusedLamb' "
        "(deepspeed's FusedLamb), which cannot run here: needs a CUDA device (torch.cuda.is_available() is False here)"
    )


def test_listing_shows_aliases_and_a_pattern_finds_the_target():
    adamw = list_optimizers("adamw_torch_fused")
    assert [i.name for i in adamw] == ["AdamW"] and adamw[0].source == "torch"
    assert {"adamw_torch", "adamw_torch_fused", "adamw", "pytorch_adamw"} <= set(adamw[0].aliases)
    assert adamw[0].alias_defaults["adamw_torch_fused"] == {"fused": True}
    sgd = list_optimizers("SGD")[0]
    assert "sgd" in sgd.aliases and "timm:sgd" in sgd.aliases  # the collision loser, qualified
    json.dumps([i.as_dict() for i in list_optimizers()])


def test_listing_tool_explains_a_refused_alias():
    result = run_python("""
        import sys
        sys.argv = ['list_optimizers.py', 'decoupled_lionw']
        import runpy
        runpy.run_path('tools/list_optimizers.py', run_name='__main__')
    """)
    assert result.returncode == 1
    assert "'decoupled_lionw' (LLM Foundry optimizer) is not accepted" in result.stderr
    assert "use type='Lion'" in result.stderr


def test_catalogue_note_is_logged_once_when_built(caplog, monkeypatch):
    monkeypatch.setattr(registration, "_NOTES_LOGGED", set())
    note = registration.get_catalog().entries["DAdaptAdam"].spec.notes
    assert note
    with caplog.at_level(logging.WARNING, logger="visdet.engine.optim"):
        OPTIMIZERS.build(dict(type="AdamW", params=_matrix(), lr=1e-3))  # no note: nothing logged
        for _ in range(2):
            OPTIMIZERS.build(dict(type="DAdaptAdam", params=_matrix(), lr=1.0))
    records = [r for r in caplog.records if r.name == "visdet.engine.optim" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in records] == [f"DAdaptAdam: {note}"]


def test_alias_lookups_import_no_backend():
    result = run_python("""
        import sys
        from visdet.registry import OPTIMIZERS
        assert 'adamw_8bit' in OPTIMIZERS and 'paged_lion_8bit' in OPTIMIZERS
        assert OPTIMIZERS.info('adamw_8bit').name == 'AdamW8bit'
        OPTIMIZERS.expand_alias(dict(type='lion_8bit', lr=1e-4))
        print(sorted(m for m in ('bitsandbytes', 'deepspeed', 'transformers') if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
