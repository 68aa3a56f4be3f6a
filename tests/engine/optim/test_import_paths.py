"""The names users import from visdet.engine.optim: the same objects as visdet's, and each working."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from mmengine.registry import DefaultScope

import visdet.registry
from visdet.engine.optim import (
    OPTIMIZERS,
    AmpOptimWrapper,
    DefaultOptimWrapperConstructor,
    OptimWrapper,
    OptimizerConfigError,
    build_optim_wrapper,
)
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper as VisdetAmp
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper as VisdetOptimWrapper


def test_registry_and_classes_are_visdets_own_objects():
    assert OPTIMIZERS is visdet.registry.OPTIMIZERS
    assert DefaultOptimWrapperConstructor is OptimWrapperConstructor
    assert OptimWrapper is VisdetOptimWrapper and AmpOptimWrapper is VisdetAmp
    assert "AdamW" in OPTIMIZERS.module_dict and OPTIMIZERS.get("AdamW") is torch.optim.AdamW


def test_the_documented_listing_runs_in_a_fresh_interpreter_without_a_cycle():
    code = ("from visdet.engine.optim import OPTIMIZERS\n"
            "names = sorted(OPTIMIZERS.module_dict.keys())\n"
            "assert 'AdamW' in names and 'SGD' in names, names\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_constructor_builds_visdets_wrapper():
    model = torch.nn.Linear(3, 2)
    wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)))(model)
    assert isinstance(wrapper, VisdetOptimWrapper)
    assert isinstance(wrapper.optimizer, torch.optim.SGD)


@pytest.mark.parametrize("scope", ["mmengine", "visdet"])
def test_build_optim_wrapper_takes_mmengines_arguments_and_uses_visdets_registries(scope):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with DefaultScope.overwrite_default_scope(scope):  # mmengine's own function would give its wrapper here
        wrapper = build_optim_wrapper(model, dict(
            optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.0),
            clip_grad=dict(max_norm=1.0)))
    assert isinstance(wrapper, VisdetOptimWrapper)  # visdet's wrapper, not mmengine's
    decays = sorted(g["weight_decay"] for g in wrapper.optimizer.param_groups)
    assert decays[0] == 0.0 and decays[-1] == 0.05
    loss = model(torch.randn(5, 3)).sum()
    before = model[0].weight.detach().clone()
    wrapper.update_params(loss)
    assert not torch.equal(before, model[0].weight)


def test_build_optim_wrapper_keeps_visdets_checks():
    with pytest.raises(OptimizerConfigError, match="optim_wrapper.optimizer.type: unknown optimizer type 'AdamWW'"):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(optimizer=dict(type="AdamWW", lr=1e-3)))
    with pytest.raises(OptimizerConfigError, match="optim_wrapper: must be a dict"):
        build_optim_wrapper(torch.nn.Linear(2, 2), "AdamW")
