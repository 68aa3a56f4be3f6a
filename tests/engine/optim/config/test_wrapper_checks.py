"""The ``optim_wrapper`` section's own keys (clip_grad, accumulative_counts, type...): config errors at build time."""
from __future__ import annotations

import pytest
from optim_cfg_helpers import ADAMW, build, expect

from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError


@pytest.mark.parametrize(
    "clip_grad, match",
    [
        (dict(max_nrom=35), r"unknown argument 'max_nrom'; did you mean 'max_norm'"),
        (dict(type="l2", max_norm=1), r"type must be 'norm', 'value' or 'agc'"),
        (dict(type=["norm"], max_norm=1),  # fuzzer: unhashable
         r"type must be 'norm', 'value' or 'agc' \(adaptive, unit-wise\), got \['norm'\]"),
        (dict(norm_type=2), r"needs 'max_norm'"),
        (dict(max_norm="35"), r"max_norm must be a number"),
        (dict(max_norm=0), r"max_norm=0 would zero every gradient"),
        (dict(max_norm=35, norm_type=-2), r"norm_type must be a positive number or 'inf'"),
        (dict(type="value", max_norm=1), r"unknown argument 'max_norm'"),
        ([35], r"must be a dict like dict\(max_norm=35"),
        ({}, r"must be a dict like"),
    ],
)
def test_bad_clip_grad(clip_grad, match):
    err = expect(match, ADAMW, clip_grad=clip_grad)
    assert err.key.startswith("optim_wrapper.clip_grad")


def test_good_clip_grad_variants():
    build(ADAMW, clip_grad=dict(max_norm=35, norm_type=2))
    build(ADAMW, clip_grad=dict(max_norm=1.0, norm_type="inf"))
    build(ADAMW, clip_grad=dict(type="value", clip_value=0.5))


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_accumulative_counts(value):
    err = expect(r"accumulative_counts must be an integer >= 1", ADAMW, accumulative_counts=value)
    assert err.key == "optim_wrapper.accumulative_counts"


def test_unknown_wrapper_key_and_type():
    expect(r"OptimWrapper got an unknown argument 'clip_grads'; did you mean 'clip_grad'",
           ADAMW, clip_grads=dict(max_norm=1))
    expect(r"unknown optim wrapper type 'OptimWraper'; did you mean 'OptimWrapper'", ADAMW, type="OptimWraper")


@pytest.mark.parametrize(
    "wrapper_type, match",
    [
        ("", r"type must be a wrapper name like 'OptimWrapper', got ''"),  # mmengine: RuntimeError 'Failed to get '
        (".OptimWrapper", r"unknown optim wrapper type '.OptimWrapper'"),  # mmengine: TypeError from a relative import
        ("os.path", r"'os.path' names <module .*>, which is not an optim wrapper class; use e.g. type='OptimWrapper'"),
        (int, r"<class 'int'> is not an optim wrapper class"),  # was built: int(optimizer=...) raised TypeError
    ],
)
def test_wrapper_type_that_is_not_a_wrapper(wrapper_type, match):
    """Found by the fuzzer."""
    err = expect(match, ADAMW, type=wrapper_type)
    assert err.key == "optim_wrapper.type"


def test_apex_wrapper_without_apex_says_what_to_use_instead():
    """Found by the fuzzer: mmengine's ApexOptimWrapper asserted 'Apex is not installed' when built."""
    from mmengine.optim.optimizer import apex_optimizer_wrapper

    if apex_optimizer_wrapper.apex_amp is not None:
        pytest.skip("NVIDIA Apex is installed here")
    err = expect(r"'ApexOptimWrapper' cannot run here: NVIDIA Apex is not installed .*use type='AmpOptimWrapper'",
                 ADAMW, type="ApexOptimWrapper")
    assert isinstance(err, OptimizerUnavailableError) and err.key == "optim_wrapper.type"


def test_amp_wrapper_keys_pass_through_the_constructor(small_net):
    """AmpOptimWrapper's first argument is loss_scale, not optimizer: it must not be taken for it."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    sgd = dict(type="SGD", lr=0.1)
    with DefaultScope.overwrite_default_scope("visdet"):
        wrapper = build_optim_wrapper(small_net, dict(type="AmpOptimWrapper", loss_scale=512.0, dtype="float16",
                                                      optimizer=dict(sgd)))
        assert wrapper.loss_scaler.get_scale() == 512.0
        with pytest.raises(OptimizerConfigError, match=r"unknown argument 'loss_scal'; did you mean 'loss_scale'"):
            build_optim_wrapper(small_net, dict(type="AmpOptimWrapper", loss_scal="dynamic", optimizer=dict(sgd)))
