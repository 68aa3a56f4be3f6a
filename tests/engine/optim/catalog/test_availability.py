"""Whether an optimizer's needs are met on this machine now, and the reasons given when not."""
from __future__ import annotations

import shutil

import pytest
import torch

from visdet.engine.optim import Need, OptimizerSpec
from visdet.engine.optim.catalog.availability import MET_BY_ARGUMENT, NEED_TEXT, assume_met, need_met, unmet_needs


def _spec(*needs: Need) -> OptimizerSpec:
    return OptimizerSpec(name="Fancy", class_name="Fancy", module="fancy", source="fancy", needs=needs)


@pytest.mark.parametrize("available", [True, False])
def test_cuda_is_met_exactly_when_torch_sees_a_device(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert need_met(Need.CUDA) is available
    assert unmet_needs(_spec(Need.CUDA)) == ([] if available else [NEED_TEXT[Need.CUDA]])


def test_distributed_is_met_only_once_a_process_group_exists(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    assert not need_met(Need.DISTRIBUTED)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert need_met(Need.DISTRIBUTED)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)  # torch built without it
    assert not need_met(Need.DISTRIBUTED)


def test_a_cxx_compiler_is_looked_up_on_path_as_cxx_says(monkeypatch):
    looked_up = []
    def which(name: str) -> str | None:
        looked_up.append(name)
        return f"/usr/bin/{name}" if name == "g++" else None

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.delenv("CXX", raising=False)
    assert not need_met(Need.CXX_COMPILER) and looked_up == ["c++"]  # the default name
    monkeypatch.setenv("CXX", "g++")
    assert need_met(Need.CXX_COMPILER) and looked_up[-1] == "g++"
    monkeypatch.setenv("CXX", "clang++")
    assert unmet_needs(_spec(Need.CXX_COMPILER)) == [NEED_TEXT[Need.CXX_COMPILER]]


@pytest.mark.parametrize("need", [Need.DEEPSPEED_ENGINE, Need.PARAM_LAYOUT])
def test_needs_of_how_it_is_built_or_driven_are_never_met_by_the_machine(monkeypatch, need):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert not need_met(need)


def test_model_is_met_by_visdets_constructor():
    assert need_met(Need.MODEL)  # build/model_argument.py passes the model to the classes that take it


def test_closure_is_met_by_visdets_closure_driver():
    assert need_met(Need.CLOSURE)  # wrappers/drivers/closure.py runs step(closure) on the same batch


def test_base_optimizer_and_fp16_weights():
    assert need_met(Need.BASE_OPTIMIZER)  # a config nests the optimizer it wraps (config/nested_optimizer.py)
    assert not need_met(Need.FP16_WEIGHTS)  # visdet keeps float32 weights (SafeFP16Optimizer needs float16 ones)


def test_create_graph_is_met_by_visdets_second_order_driver():
    assert need_met(Need.CREATE_GRAPH)  # wrappers/drivers/second_order.py back-propagates with create_graph=True


def test_every_need_has_a_reason_text_and_a_verdict():
    assert set(NEED_TEXT) == set(Need)
    for need in Need:
        assert isinstance(need_met(need), bool)  # none raises "unknown need"


# Needs visdet meets whatever the build passes (the model) have nothing to show here.
@pytest.mark.parametrize("need, arguments", [(n, a) for n, a in sorted(MET_BY_ARGUMENT.items()) if not need_met(n)])
def test_a_need_met_by_an_argument_is_met_when_the_build_passes_it(need, arguments):
    spec = _spec(need)
    assert unmet_needs(spec) == [NEED_TEXT[need]]
    assert unmet_needs(spec, frozenset({"params", "lr"})) == [NEED_TEXT[need]]
    for argument in arguments:
        assert unmet_needs(spec, frozenset({"params", argument})) == []


def test_met_by_argument_names_the_arguments_each_kind_of_build_passes():
    assert MET_BY_ARGUMENT[Need.DEEPSPEED_ENGINE] == ("deepspeed",)
    assert set(MET_BY_ARGUMENT[Need.BASE_OPTIMIZER]) == {"base_optimizer", "optimizer"}
    assert MET_BY_ARGUMENT[Need.MODEL] == ("model",)
    assert Need.CUDA not in MET_BY_ARGUMENT  # no argument makes a GPU appear


def test_unmet_needs_gives_one_reason_per_unmet_need_in_the_specs_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    spec = _spec(Need.DISTRIBUTED, Need.CUDA, Need.DEEPSPEED_ENGINE)
    assert unmet_needs(spec) == [NEED_TEXT[Need.DISTRIBUTED], NEED_TEXT[Need.CUDA], NEED_TEXT[Need.DEEPSPEED_ENGINE]]
    assert unmet_needs(spec, frozenset({"deepspeed"})) == [NEED_TEXT[Need.DISTRIBUTED], NEED_TEXT[Need.CUDA]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert unmet_needs(spec, frozenset({"deepspeed"})) == [NEED_TEXT[Need.DISTRIBUTED]]
    assert unmet_needs(_spec()) == []
    assert "CUDA" in NEED_TEXT[Need.CUDA] and "torchrun" in NEED_TEXT[Need.DISTRIBUTED]
    assert "closure" in NEED_TEXT[Need.CLOSURE] and "create_graph=True" in NEED_TEXT[Need.CREATE_GRAPH]


def test_assume_met_holds_inside_the_block_and_restores_state_after(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    spec = _spec(Need.DISTRIBUTED)
    with assume_met(Need.DISTRIBUTED):
        assert need_met(Need.DISTRIBUTED) and unmet_needs(spec) == []
        assert not need_met(Need.DEEPSPEED_ENGINE)  # only what was named
    assert not need_met(Need.DISTRIBUTED) and unmet_needs(spec) == [NEED_TEXT[Need.DISTRIBUTED]]


def test_assume_met_nests_and_restores_after_an_exception(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    with assume_met(Need.DISTRIBUTED):
        with assume_met(Need.DISTRIBUTED, Need.DEEPSPEED_ENGINE):
            assert need_met(Need.DEEPSPEED_ENGINE)
        assert need_met(Need.DISTRIBUTED)  # the inner block keeps what the outer one assumed
        assert not need_met(Need.DEEPSPEED_ENGINE)
    with pytest.raises(RuntimeError, match="boom"):
        with assume_met(Need.DEEPSPEED_ENGINE):
            raise RuntimeError("boom")
    assert not need_met(Need.DEEPSPEED_ENGINE) and not need_met(Need.DISTRIBUTED)
