"""visdet.registry: children of mmengine's registries, scope resolution, idempotent import."""
from __future__ import annotations

import importlib

import mmengine.registry as mm
import pytest
import torch
from mmengine.registry import DefaultScope

import visdet.registry as vr
from testutils import run_python

PAIRS = [
    ("RUNNERS", "RUNNERS"), ("LOOPS", "LOOPS"), ("HOOKS", "HOOKS"), ("DATASETS", "DATASETS"),
    ("DATA_SAMPLERS", "DATA_SAMPLERS"), ("TRANSFORMS", "TRANSFORMS"), ("MODELS", "MODELS"),
    ("TASK_UTILS", "TASK_UTILS"), ("OPTIMIZERS", "OPTIMIZERS"), ("OPTIM_WRAPPERS", "OPTIM_WRAPPERS"),
    ("OPTIM_WRAPPER_CONSTRUCTORS", "OPTIM_WRAPPER_CONSTRUCTORS"), ("PARAM_SCHEDULERS", "PARAM_SCHEDULERS"),
    ("METRICS", "METRICS"), ("EVALUATOR", "EVALUATOR"), ("VISUALIZERS", "VISUALIZERS"),
    ("VISBACKENDS", "VISBACKENDS"), ("LOG_PROCESSORS", "LOG_PROCESSORS"), ("STRATEGIES", "STRATEGIES"),
]


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_every_registry_is_a_visdet_child_of_mmengine(ours, theirs):
    registry, parent = getattr(vr, ours), getattr(mm, theirs)
    assert registry.parent is parent
    assert registry.scope == "visdet"
    assert parent.children["visdet"] is registry
    assert registry._locations, f"{ours} has no import locations"
    for location in registry._locations:
        importlib.import_module(location)  # every location must exist


def test_default_scope_resolves_visdet_optimizers_through_mmengine_root(small_net):
    with DefaultScope.overwrite_default_scope("visdet"):
        optimizer = mm.OPTIMIZERS.build(dict(type="DAdaptAdam", params=small_net.parameters(), lr=1.0))
    import dadaptation

    assert isinstance(optimizer, dadaptation.DAdaptAdam)


def test_reload_returns_the_same_registries_with_the_same_names():
    before = (vr.OPTIMIZERS, sorted(vr.OPTIMIZERS.module_dict))

    @vr.MODELS.register_module(force=True)
    class UserModel(torch.nn.Module):  # registered before the reload
        pass

    import mmengine.optim  # noqa: F401  mmengine fills its own registry; ours must not clash

    reloaded = importlib.reload(vr)
    assert reloaded.OPTIMIZERS is before[0]
    assert sorted(reloaded.OPTIMIZERS.module_dict) == before[1]
    assert reloaded.MODELS.get("UserModel") is UserModel


def test_importing_twice_in_a_fresh_process_is_quiet_and_idempotent():
    result = run_python(
        """
        import importlib, visdet, visdet.registry as r
        n = len(r.OPTIMIZERS)
        importlib.reload(r); importlib.reload(visdet)
        from visdet.engine.optim.registry import register_all_optimizers
        register_all_optimizers(r.OPTIMIZERS)
        assert len(r.OPTIMIZERS) == n, (n, len(r.OPTIMIZERS))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_import_visdet_prints_nothing_and_does_not_import_backends():
    result = run_python(
        """
        import sys, visdet, visdet.registry
        names = list(visdet.registry.OPTIMIZERS.module_dict)
        loaded = [m for m in ("bitsandbytes", "deepspeed", "dadaptation", "torch._dynamo") if m in sys.modules]
        sys.stdout.write(repr(loaded))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == "[]"
