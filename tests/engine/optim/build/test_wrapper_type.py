"""resolve_wrapper: optim_wrapper.type to a wrapper class that can run here, or a config error naming the key."""
from __future__ import annotations

import pytest
from mmengine.optim import OptimWrapper as MMEngineOptimWrapper

from visdet.engine.optim.build.wrapper_type import resolve_wrapper
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper


def test_names_and_classes_resolve_to_visdet_wrappers():
    assert resolve_wrapper("OptimWrapper") is OptimWrapper
    assert resolve_wrapper("AmpOptimWrapper") is AmpOptimWrapper
    assert resolve_wrapper(MMEngineOptimWrapper) is MMEngineOptimWrapper


@pytest.mark.parametrize(
    "wrapper_type, match",
    [
        ("OptimWraper", r"unknown optim wrapper type 'OptimWraper'; did you mean 'OptimWrapper'.* Known: "),
        ("", r"type must be a wrapper name like 'OptimWrapper', got ''"),
        (3, r"type must be a wrapper name like 'OptimWrapper', got 3"),
        (int, r"<class 'int'> is not an optim wrapper class"),
    ],
)
def test_what_names_no_wrapper_is_a_config_error_at_the_type_key(wrapper_type, match):
    with pytest.raises(OptimizerConfigError, match=match) as info:
        resolve_wrapper(wrapper_type)
    assert info.value.key == "optim_wrapper.type"


def test_apex_wrapper_without_apex_is_unavailable():
    from mmengine.optim.optimizer import apex_optimizer_wrapper

    if apex_optimizer_wrapper.apex_amp is not None:
        pytest.skip("NVIDIA Apex is installed here")
    with pytest.raises(OptimizerUnavailableError, match="NVIDIA Apex is not installed"):
        resolve_wrapper(apex_optimizer_wrapper.ApexOptimWrapper)
