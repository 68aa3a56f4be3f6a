"""Every configuration mistake raises OptimizerConfigError at build time, naming key, value and fix."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.utils.signatures import accepted_keywords


def build(optimizer: dict, paramwise_cfg: dict | None = None, **wrapper) -> OptimWrapperConstructor:
    """Only the config: no model is needed for these checks to fire."""
    return OptimWrapperConstructor(dict(optimizer=optimizer, **wrapper), paramwise_cfg)


def expect(match: str, optimizer: dict, paramwise_cfg: dict | None = None, **wrapper) -> OptimizerConfigError:
    with pytest.raises(OptimizerConfigError, match=match) as info:
        build(optimizer, paramwise_cfg, **wrapper)
    return info.value


# --- type ---------------------------------------------------------------------

def test_unknown_type_suggests_close_names():
    err = expect(r"unknown optimizer type 'Adamw'; did you mean 'AdamW'", dict(type="Adamw", lr=1e-3))
    assert err.key == "optim_wrapper.optimizer.type"


def test_known_type_that_cannot_run_here_says_why():
    if torch.cuda.is_available():
        pytest.skip("FusedLamb runs where CUDA is available")
    err = expect(r"'FusedLamb' cannot run here: needs a CUDA device", dict(type="FusedLamb", lr=1e-3))
    assert isinstance(err, OptimizerUnavailableError)


def test_type_needing_a_deepspeed_engine_says_so():
    expect(r"needs a DeepSpeed engine", dict(type="OnebitAdam", lr=1e-3))


# --- keywords ---------------------------------------------------------------

@pytest.mark.parametrize(
    "optimizer, bad, hint",
    [
        (dict(type="AdamW", learning_rate=1e-3), "learning_rate", "lr"),
        (dict(type="Adam", lr=1e-3, beta1=0.9), "beta1", "betas"),
        (dict(type="Adam", lr=1e-3, momentum=0.9), "momentum", "betas"),
        (dict(type="SGD", lr=0.1, momentom=0.9), "momentom", "momentum"),
        (dict(type="AdamW8bit", lr=1e-3, min_8bit=4096), "min_8bit", "min_8bit_size"),
        (dict(type="DAdaptAdam", lr=1.0, decoupled=True), "decoupled", "decouple"),
    ],
)
def test_unknown_keyword_names_valid_ones(optimizer, bad, hint):
    err = expect(rf"got an unknown argument '{bad}'; did you mean '{hint}'\?", optimizer)
    assert err.key == "optim_wrapper.optimizer"
    assert "Valid arguments: " in str(err) and hint in str(err).split("Valid arguments: ")[1]


class ReadsKwargs(torch.optim.SGD):
    """Takes options through **kwargs and reads them by name."""

    def __init__(self, params, lr=0.1, **kwargs):
        self.gamma = kwargs.pop("gamma", 1.0)
        self.verbose = "verbose" in kwargs
        super().__init__(params, lr=lr)


class ForwardsKwargs(torch.optim.AdamW):
    """Passes **kwargs on to its base class."""

    def __init__(self, params, warmup=0, **kwargs):
        super().__init__(params, **kwargs)


def _opaque_helper(**kwargs):
    return kwargs


class OpaqueKwargs(torch.optim.SGD):
    """Hands **kwargs to something visdet cannot follow."""

    def __init__(self, params, lr=0.1, **kwargs):
        self.extra = _opaque_helper(**kwargs)
        super().__init__(params, lr=lr)


def test_kwargs_read_by_name_are_accepted_and_typos_refused():
    assert {"lr", "gamma", "verbose"} <= set(accepted_keywords(ReadsKwargs).names)
    build(dict(type=ReadsKwargs, gamma=0.5))
    expect(r"unknown argument 'gama'; did you mean 'gamma'", dict(type=ReadsKwargs, gama=0.5))


def test_kwargs_forwarded_to_base_class_are_followed():
    keywords = accepted_keywords(ForwardsKwargs)
    assert {"warmup", "lr", "betas", "weight_decay", "fused"} <= set(keywords.names) and not keywords.open
    build(dict(type=ForwardsKwargs, lr=1e-3, betas=(0.9, 0.99), warmup=10))
    expect(r"unknown argument 'beta'; did you mean 'betas'", dict(type=ForwardsKwargs, beta=(0.9, 0.99)))


def test_real_kwargs_class_from_deepspeed_is_followed():
    """DeepSpeed's ZenFlowCPUAdam takes (*args, **kwargs) and forwards them to DeepSpeedCPUAdam."""
    from visdet.registry import OPTIMIZERS

    keywords = accepted_keywords(OPTIMIZERS.get("ZenFlowCPUAdam"))
    assert {"overlap_step", "lr", "betas", "adamw_mode", "fp32_optimizer_states"} <= set(keywords.names)
    assert not keywords.open


def test_kwargs_going_where_visdet_cannot_see_warn_instead_of_refusing():
    keywords = accepted_keywords(OpaqueKwargs)
    assert keywords.open and "_opaque_helper" in keywords.open_reason
    with pytest.warns(OptimizerConfigWarning, match="may not use 'anything'"):
        build(dict(type=OpaqueKwargs, anything=1))


def test_missing_required_argument():
    class NeedsAlpha(torch.optim.SGD):
        def __init__(self, params, alpha):
            super().__init__(params, lr=alpha)

    expect(r"needs 'alpha'", dict(type=NeedsAlpha))


# --- values -------------------------------------------------------------------

@pytest.mark.parametrize(
    "optimizer, key, match",
    [
        (dict(type="AdamW", lr="1e-3"), "lr", r"lr must be a number, got the string '1e-3'; write lr=1e-3 without quotes"),
        (dict(type="AdamW", lr=-1e-3), "lr", r"lr must be >= 0, got -0.001"),
        (dict(type="AdamW", lr=float("nan")), "lr", r"lr must be finite"),
        (dict(type="AdamW", lr=float("inf")), "lr", r"lr must be finite"),
        (dict(type="AdamW", lr=True), "lr", r"lr must be a number, got True"),
        (dict(type="AdamW", betas=(0.9, 1.0)), "betas", r"betas\[1\] must be in \[0, 1\), got 1"),
        (dict(type="AdamW", betas=(-0.1, 0.9)), "betas", r"betas\[0\] must be in \[0, 1\)"),
        (dict(type="AdamW", betas=0.9), "betas", r"betas must be a tuple"),
        (dict(type="AdamW", betas=(0.9, 0.99, 0.9)), "betas", r"betas must have 2 values"),
        (dict(type="AdamW", weight_decay=-0.01), "weight_decay", r"weight_decay must be >= 0"),
        (dict(type="AdamW", eps=-1e-8), "eps", r"eps must be >= 0"),
        (dict(type="AdamW", amsgrad="yes"), "amsgrad", r"amsgrad must be True or False"),
        (dict(type="SGD", lr=0.1, momentum="0.9"), "momentum", r"momentum must be a number"),
        (dict(type="SGD", lr=0.1, nesterov=1), "nesterov", r"nesterov must be True or False"),
        (dict(type="AdamW8bit", lr=1e-3, min_8bit_size="big"), "min_8bit_size", r"min_8bit_size must be an integer >= 1"),
        # Found by the fuzzer: a default holding None (Adafactor eps=(None, 1e-3)) was not checked; torch then
        # raised IndexError for [] and KeyError for a dict.
        (dict(type="TorchAdafactor", lr=1e-2, eps=[]), "eps",
         r"eps must be a tuple of 2 numbers like \(None, 0.001\) \(None where the default has None\), got \[\]"),
        (dict(type="TorchAdafactor", lr=1e-2, eps={"a": 1}), "eps", r"eps must be a tuple of 2 numbers"),
        (dict(type="TorchAdafactor", lr=1e-2, eps=(None, "1e-3")), "eps", r"eps\[1\] must be a number"),
    ],
)
def test_bad_values(optimizer, key, match):
    err = expect(match, optimizer)
    assert err.key == f"optim_wrapper.optimizer.{key}"


@pytest.mark.parametrize(
    "obj_type, match",
    [
        (".AdamW", r"'.AdamW' could not be found; write a registered name like 'AdamW'"),  # mmengine: TypeError
        ("..", r"'..' could not be found"),
        ("no_such_pkg.AdamW", r"'no_such_pkg.AdamW' could not be found"),
        ("os.path", r"'os.path' names <module .*>, not a torch.optim.Optimizer class"),  # was: issubclass() TypeError
        ("math.pi", r"'math.pi' names 3.14.*, not a torch.optim.Optimizer class"),
    ],
)
def test_dotted_type_that_is_not_an_optimizer(obj_type, match):
    """Found by the fuzzer: dotted names mmengine resolves by importing, and what they resolve to."""
    err = expect(match, dict(type=obj_type, lr=1e-3))
    assert err.key == "optim_wrapper.optimizer.type"


def test_a_none_entry_where_the_default_has_none_is_accepted():
    build(dict(type="TorchAdafactor", lr=1e-2, eps=(None, 1e-3)))


def test_a_scalar_tensor_lr_is_accepted():
    build(dict(type="AdamW", lr=torch.tensor(1e-3)))


def test_values_the_class_itself_rejects_become_config_errors(small_net):
    ctor = build(dict(type="SGD", lr=0.1, nesterov=True))  # nesterov needs momentum > 0: torch says so at build
    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper.optimizer: SGD refused its arguments: .*[Nn]esterov"):
        ctor(small_net)


# --- paramwise_cfg ------------------------------------------------------------

ADAMW = dict(type="AdamW", lr=1e-4, weight_decay=0.05)


@pytest.mark.parametrize(
    "paramwise_cfg, key, match",
    [
        (dict(norm_decay_mul=0.0), "optim_wrapper.paramwise_cfg", r"unknown key 'norm_decay_mul'; did you mean 'norm_decay_mult'"),
        (dict(bias_lr_mult=-1.0), "optim_wrapper.paramwise_cfg.bias_lr_mult", r"bias_lr_mult must be >= 0"),
        (dict(flat_decay_mult="0"), "optim_wrapper.paramwise_cfg.flat_decay_mult", r"must be a number"),
        (dict(bypass_duplicate="yes"), "optim_wrapper.paramwise_cfg", r"bypass_duplicate must be True or False"),
        (dict(custom_keys=["backbone"]), "optim_wrapper.paramwise_cfg.custom_keys", r"must be a dict of name"),
        (dict(custom_keys={"backbone": 0.1}), "optim_wrapper.paramwise_cfg.custom_keys['backbone']", r"must be a dict like"),
        (dict(custom_keys={"backbone": dict(lr_mul=0.1)}), "optim_wrapper.paramwise_cfg.custom_keys['backbone']",
         r"unknown key 'lr_mul'; did you mean 'lr_mult'"),
        (dict(custom_keys={"backbone": dict(lr="0.1")}), "optim_wrapper.paramwise_cfg.custom_keys['backbone'].lr",
         r"lr must be a number"),
        (dict(custom_keys={"backbone": dict(decay_mult=-1)}), "optim_wrapper.paramwise_cfg.custom_keys['backbone'].decay_mult",
         r"decay_mult must be >= 0"),
        (dict(custom_keys={"head": dict(betas=(0.9, 2.0))}), "optim_wrapper.paramwise_cfg.custom_keys['head'].betas",
         r"betas\[1\] must be in"),
    ],
)
def test_bad_paramwise_cfg(paramwise_cfg, key, match):
    err = expect(match, ADAMW, paramwise_cfg)
    assert err.key == key


@pytest.mark.parametrize(
    "paramwise_cfg",
    [dict(norm_decay_mult=0.0), dict(flat_decay_mult=0.0), dict(custom_keys={"head": dict(decay_mult=0.0)})],
)
def test_decay_multipliers_without_weight_decay(paramwise_cfg):
    expect(r"multiplies the weight decay, but optim_wrapper.optimizer sets no weight_decay \(its default is 0.01\)",
           dict(type="AdamW", lr=1e-4), paramwise_cfg)


# --- wrapper: clip_grad, accumulative_counts, keys ----------------------------------

@pytest.mark.parametrize(
    "clip_grad, match",
    [
        (dict(max_nrom=35), r"unknown argument 'max_nrom'; did you mean 'max_norm'"),
        (dict(type="l2", max_norm=1), r"type must be 'norm' or 'value'"),
        (dict(type=["norm"], max_norm=1), r"type must be 'norm' or 'value', got \['norm'\]"),  # fuzzer: unhashable
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
    expect(r"OptimWrapper got an unknown argument 'clip_grads'; did you mean 'clip_grad'", ADAMW, clip_grads=dict(max_norm=1))
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


def test_paramwise_cfg_that_is_not_a_dict():
    for bad in ([1], "norm_decay_mult=0"):
        with pytest.raises(OptimizerConfigError, match="optim_wrapper.paramwise_cfg: must be a dict"):
            OptimWrapperConstructor(dict(optimizer=ADAMW), bad)


def test_amp_wrapper_keys_pass_through_the_constructor(small_net):
    """AmpOptimWrapper's first argument is loss_scale, not optimizer: it must not be taken for it."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("visdet"):
        wrapper = build_optim_wrapper(
            small_net, dict(type="AmpOptimWrapper", loss_scale=512.0, dtype="float16", optimizer=dict(type="SGD", lr=0.1))
        )
        assert wrapper.loss_scaler.get_scale() == 512.0
        with pytest.raises(OptimizerConfigError, match=r"unknown argument 'loss_scal'; did you mean 'loss_scale'"):
            build_optim_wrapper(small_net, dict(type="AmpOptimWrapper", loss_scal="dynamic", optimizer=dict(type="SGD", lr=0.1)))


def test_missing_optimizer_and_type():
    with pytest.raises(OptimizerConfigError, match="has no 'optimizer'"):
        OptimWrapperConstructor(dict(type="OptimWrapper"))
    expect(r"has no 'type'", dict(lr=1e-3))


def test_errors_come_before_the_model_is_touched():
    """The constructor refuses in __init__: no model, no data, no training work."""
    with pytest.raises(OptimizerConfigError):
        build(dict(type="AdamW", lr=1e-3, learning_rate=2))


def test_error_is_a_value_error_with_one_line_key_prefix():
    err = expect(r".", dict(type="AdamW", lr="fast"))
    assert isinstance(err, ValueError)
    assert str(err).startswith("optim_wrapper.optimizer.lr: ")


def test_required_arguments_of_a_base_reached_through_kwargs_are_not_demanded():
    """torch.optim.Optimizer.__init__ requires `defaults`; a subclass forwarding **kwargs passes it itself."""

    class PassesDefaults(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, **kwargs):
            super().__init__(params, defaults=dict(lr=lr), **kwargs)

    keywords = accepted_keywords(PassesDefaults)
    assert "defaults" in keywords.names and keywords.required == ()
    build(dict(type=PassesDefaults, lr=0.5))


class _Base:
    def __init__(self, optimizer, base_only=1):
        self.optimizer = optimizer


class _Mixin:
    def __init__(self, *args, mixin_only=2, **kwargs):
        super().__init__(*args, **kwargs)  # reaches _Base only through the built class's MRO


class _Built(_Mixin, _Base):
    pass


def test_super_in_a_mixin_follows_the_built_class_mro():
    """mmengine's LinearLR is such a mixin class; its ``begin``/``end`` come from the base."""
    keywords = accepted_keywords(_Built)
    assert {"mixin_only", "base_only"} <= set(keywords.names) and not keywords.open
