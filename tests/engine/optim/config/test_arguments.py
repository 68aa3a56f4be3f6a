"""An optimizer's type, keywords and values: each mistake is an OptimizerConfigError at build, naming key and fix."""
from __future__ import annotations

import pytest
import torch
from optim_cfg_helpers import build, expect

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.config.arguments import OptimizerConfigWarning
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.utils.signatures import accepted_keywords

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


def test_missing_optimizer_and_type():
    with pytest.raises(OptimizerConfigError, match="has no 'optimizer'"):
        OptimWrapperConstructor(dict(type="OptimWrapper"))
    expect(r"has no 'type'", dict(lr=1e-3))


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


def test_required_arguments_of_a_base_reached_through_kwargs_are_not_demanded():
    """torch.optim.Optimizer.__init__ requires `defaults`; a subclass forwarding **kwargs passes it itself."""

    class PassesDefaults(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, **kwargs):
            super().__init__(params, defaults=dict(lr=lr), **kwargs)

    keywords = accepted_keywords(PassesDefaults)
    assert "defaults" in keywords.names and keywords.required == ()
    build(dict(type=PassesDefaults, lr=0.5))


# --- values -------------------------------------------------------------------

@pytest.mark.parametrize(
    "optimizer, key, match",
    [
        (dict(type="AdamW", lr="1e-3"), "lr",
         r"lr must be a number, got the string '1e-3'; write lr=1e-3 without quotes"),
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
        (dict(type="AdamW8bit", lr=1e-3, min_8bit_size="big"), "min_8bit_size",
         r"min_8bit_size must be an integer >= 1"),
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


def test_a_none_entry_where_the_default_has_none_is_accepted():
    build(dict(type="TorchAdafactor", lr=1e-2, eps=(None, 1e-3)))


def test_a_scalar_tensor_lr_is_accepted():
    build(dict(type="AdamW", lr=torch.tensor(1e-3)))


def test_values_the_class_itself_rejects_become_config_errors(small_net):
    ctor = build(dict(type="SGD", lr=0.1, nesterov=True))  # nesterov needs momentum > 0: torch says so at build
    with pytest.raises(OptimizerConfigError,
                       match=r"optim_wrapper.optimizer: SGD refused its arguments: .*[Nn]esterov"):
        ctor(small_net)


def test_errors_come_before_the_model_is_touched():
    """The constructor refuses in __init__: no model, no data, no training work."""
    with pytest.raises(OptimizerConfigError):
        build(dict(type="AdamW", lr=1e-3, learning_rate=2))


def test_error_is_a_value_error_with_one_line_key_prefix():
    err = expect(r".", dict(type="AdamW", lr="fast"))
    assert isinstance(err, ValueError)
    assert str(err).startswith("optim_wrapper.optimizer.lr: ")
