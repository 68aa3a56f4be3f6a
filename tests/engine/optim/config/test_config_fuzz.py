"""Fuzz ``optim_wrapper`` configs: building either works or raises ``ConfigError``.

Random optimizer types (registered, misspelt, garbage), keyword names (real,
misspelt, made up), values of every type and range, and wrapper-level keys
(``type``, ``clip_grad``, ``accumulative_counts``, ``paramwise_cfg``) are fed
to the constructor with a small model. A config mistake must come out as
visdet's ``ConfigError`` (whose message names the key), never as a
``TypeError``/``KeyError``/``ZeroDivisionError`` from deep inside torch or
mmengine, and never as a hang.
"""
from __future__ import annotations

import os
import re

import signal
import string
import warnings
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import visdet.engine.optim  # noqa: F401  fills OPTIMIZERS
from testutils import SmallNet
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.registry import get_catalog
from visdet.engine.optim.config.arguments import SYNONYMS
from visdet.engine.optim.config.paramwise import CUSTOM_KEY_MULTS, PARAMWISE_KEYS
from visdet.utils.signatures import accepted_keywords
from visdet.errors import ConfigError
from visdet.registry import OPTIM_WRAPPERS, OPTIMIZERS

#: Seconds one example may take before it counts as a hang.
EXAMPLE_TIMEOUT_S = 20

_CATALOG = get_catalog()
REGISTERED = sorted(OPTIMIZERS.module_dict)


def _runs_here(name: str) -> bool:
    entry = _CATALOG.lookup(name)
    return entry is None or not entry.why_not()


def _is_deepspeed(name: str) -> bool:
    entry = _CATALOG.lookup(name)
    return entry is not None and entry.spec.source == "deepspeed"


#: Types the fuzzer builds. DeepSpeed's CPU optimizers JIT-compile a C++ kernel
#: the first time they are built (~45 s, once per process), which alone would
#: blow the time budget of this file; DeepSpeed types still appear below among
#: the types that cannot run here (refused before anything is built) and as
#: misspellings.
BUILT_TYPES = [n for n in REGISTERED if _runs_here(n) and not _is_deepspeed(n)]
#: Registered but refused here before building: CUDA-only, needs a process group or a DeepSpeed engine.
UNAVAILABLE_TYPES = [n for n in REGISTERED if not _runs_here(n)]

#: Keywords most optimizers share, for types whose class is not looked at.
COMMON_KEYWORDS = ("lr", "betas", "eps", "weight_decay", "momentum", "amsgrad", "foreach", "fused", "nesterov")


@st.composite
def misspelt(draw: st.DrawFn, word: str) -> str:
    """``word`` with one typo: changed case, a dropped, doubled, swapped or inserted character."""
    kind = draw(st.sampled_from(["case", "drop", "double", "swap", "insert", "suffix"]))
    if not word:
        return draw(st.text(string.ascii_letters, min_size=1, max_size=3))
    i = draw(st.integers(0, len(word) - 1))
    if kind == "case":
        return word.swapcase() if word.swapcase() != word else word + "x"
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "suffix":
        return word + draw(st.sampled_from(["s", "_", "2", " "]))
    return word[:i] + draw(st.sampled_from(string.ascii_lowercase + "_")) + word[i:]


def any_misspelling(words: list[str] | tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(list(words)).flatmap(misspelt)


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-8, 1e-3, 0.5, 0.9, 0.999, 1.0, 2.0, -1.0, -1e-3, 1e308, -1e308, float("nan"),
                     float("inf"), -float("inf"), 5e-324]),
)
INTS = st.one_of(st.integers(-3, 10), st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30]))
SCALARS = st.one_of(
    FLOATS,
    INTS,
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["1e-3", "0.9", "inf", "nan", "dynamic", "norm", "value", "float16", "bfloat16", "", "True"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=3),
        st.builds(lambda x: torch.tensor(x, dtype=torch.float32), FLOATS),
    ),
    max_leaves=6,
)
#: Mostly plausible values, so that fuzzing gets past the first check.
PLAUSIBLE = st.one_of(
    st.floats(1e-6, 0.5),
    st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
    st.booleans(),
)
ANY_VALUE = st.one_of(VALUES, PLAUSIBLE)


def _keywords(name: Any):
    """What the class of a buildable ``type`` accepts; None for any other type."""
    if isinstance(name, str) and name in BUILT_TYPES:
        return accepted_keywords(OPTIMIZERS.get(name))
    return None


def _real_keywords(name: Any) -> tuple[str, ...]:
    keywords = _keywords(name)
    return (keywords.names if keywords is not None else ()) or COMMON_KEYWORDS


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (a middle value: Hypothesis favours the ends of a range)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


def plausible_for(default: Any) -> st.SearchStrategy[Any]:
    """A value of the default's type and a sane size, so the build gets past the first check."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(0, max(2 * default, 8))
    if isinstance(default, float):
        return st.floats(0.0, max(2 * default, 1.0))
    if isinstance(default, tuple) and all(isinstance(v, (int, float)) for v in default):
        return st.tuples(*[st.floats(0.0, 0.999) for _ in default])
    if isinstance(default, str):
        return st.just(default)
    return PLAUSIBLE


@st.composite
def keyword_names(draw: st.DrawFn, real: tuple[str, ...]) -> str:
    """Mostly real keywords of the optimizer; sometimes a typo, a synonym or noise."""
    if not rarely(draw, 4):
        return draw(st.sampled_from(real))
    return draw(st.one_of(any_misspelling(real), st.sampled_from(sorted(SYNONYMS)), st.text(min_size=1, max_size=10)))


optimizer_types = st.one_of(
    st.sampled_from(BUILT_TYPES),
    st.sampled_from(UNAVAILABLE_TYPES),
    any_misspelling(REGISTERED),
    st.text(max_size=12),
    st.sampled_from([None, 0, 1.5, True, ["AdamW"], {"type": "AdamW"}, torch.optim.AdamW, int, ""]),
)


@st.composite
def optimizer_cfgs(draw: st.DrawFn) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if not rarely(draw, 20):  # a config without 'type' once in a while
        cfg["type"] = draw(st.sampled_from(BUILT_TYPES)) if not rarely(draw, 3) else draw(optimizer_types)
    keywords = _keywords(cfg.get("type"))
    real = _real_keywords(cfg.get("type"))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(keyword_names(real))
        default = keywords.defaults.get(name) if keywords is not None else None
        cfg[name] = draw(plausible_for(default)) if not rarely(draw, 3) else draw(ANY_VALUE)
    if rarely(draw, 10):  # visdet's own keys for Muon and ZeRO
        key = draw(st.sampled_from(["fallback", "flatten_conv", "fallback_keys", "optimizer_type", "optimizer_class"]))
        cfg[key] = draw(st.one_of(ANY_VALUE, st.just({"type": "AdamW"}), st.sampled_from(BUILT_TYPES)))
    return cfg


CLIP_KEYS = ["type", "max_norm", "norm_type", "clip_value", "error_if_nonfinite", "foreach"]


@st.composite
def clip_grads(draw: st.DrawFn) -> Any:
    if rarely(draw, 10):
        return draw(st.one_of(st.none(), VALUES))
    cfg: dict[str, Any] = {}
    if not rarely(draw, 3):  # mostly a well-formed start
        cfg = draw(st.sampled_from([dict(max_norm=35, norm_type=2), dict(type="value", clip_value=1.0),
                                    dict(max_norm=1.0), dict(type="norm", max_norm=10, error_if_nonfinite=False)]))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(CLIP_KEYS)) if not rarely(draw, 4) else draw(any_misspelling(CLIP_KEYS))
        cfg[key] = draw(st.one_of(st.sampled_from(["norm", "value", "inf", 2, 35, 0.1, True, None]), ANY_VALUE))
    return cfg


@st.composite
def custom_keys(draw: st.DrawFn, real: tuple[str, ...]) -> Any:
    if rarely(draw, 10):
        return draw(VALUES)
    pattern = st.one_of(st.sampled_from(["conv", "bn", "fc1", "fc2", "bias", "weight", "fc", "."]), st.text(max_size=5))
    rule_key = st.one_of(
        st.sampled_from(CUSTOM_KEY_MULTS),
        st.sampled_from(CUSTOM_KEY_MULTS),
        st.sampled_from(real),
        st.sampled_from(real),
        any_misspelling(CUSTOM_KEY_MULTS),
        st.text(max_size=6),
    )
    rule_value = st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 2.0), PLAUSIBLE, ANY_VALUE)
    rule = st.one_of(st.dictionaries(rule_key, rule_value, max_size=3),
                     st.dictionaries(rule_key, rule_value, max_size=3), VALUES)
    return draw(st.dictionaries(st.one_of(pattern, st.none(), st.integers(-2, 2)), rule,
                                max_size=3))


@st.composite
def paramwise_cfgs(draw: st.DrawFn, real: tuple[str, ...]) -> Any:
    if rarely(draw, 10):
        return draw(VALUES)
    cfg: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(PARAMWISE_KEYS)) if not rarely(draw, 5) else draw(any_misspelling(PARAMWISE_KEYS))
        if key == "custom_keys":
            cfg[key] = draw(custom_keys(real))
        elif key == "bypass_duplicate":
            cfg[key] = draw(st.one_of(st.booleans(), ANY_VALUE))
        else:
            cfg[key] = draw(st.one_of(st.floats(0.0, 2.0), ANY_VALUE))
    return cfg


#: visdet's wrappers and mmengine's (ApexOptimWrapper among them, which needs NVIDIA Apex).
WRAPPER_NAMES = sorted(set(OPTIM_WRAPPERS.module_dict) | set(OPTIM_WRAPPERS.parent.module_dict))
WRAPPER_TYPES = st.one_of(
    st.sampled_from(WRAPPER_NAMES),
    st.sampled_from(["OptimWrapper", "AmpOptimWrapper"]),
    any_misspelling(WRAPPER_NAMES),
    VALUES,
    st.sampled_from([int, dict, torch.optim.AdamW, OptimWrapperConstructor, ".OptimWrapper", "mmengine.OptimWrapper"]),
)


@st.composite
def optim_wrapper_cfgs(draw: st.DrawFn) -> dict[str, Any]:
    if rarely(draw, 2):
        optimizer = draw(optimizer_cfgs())
    else:  # a good optimizer, so that the wrapper-level keys are what is tested
        optimizer = {"type": draw(st.sampled_from(BUILT_TYPES)), "lr": draw(st.floats(1e-5, 0.1))}
        if not rarely(draw, 4):
            optimizer["weight_decay"] = draw(st.floats(0.0, 0.1))
    real = _real_keywords(optimizer.get("type"))
    cfg: dict[str, Any] = {}
    if not rarely(draw, 20):
        cfg["optimizer"] = optimizer if not rarely(draw, 20) else draw(VALUES)
    if draw(st.booleans()):
        cfg["type"] = draw(WRAPPER_TYPES)
    if draw(st.booleans()):
        cfg["clip_grad"] = draw(clip_grads())
    if draw(st.booleans()):
        cfg["accumulative_counts"] = draw(st.one_of(st.integers(1, 4), INTS, ANY_VALUE))
    if draw(st.booleans()):
        cfg["paramwise_cfg"] = draw(paramwise_cfgs(real))
    if rarely(draw, 4):  # AmpOptimWrapper's keys, misspelt ones, or noise
        if not rarely(draw, 4):
            cfg["type"] = "AmpOptimWrapper"
        keys = ["loss_scale", "dtype", "use_fsdp"]
        name = draw(st.sampled_from(keys)) if not rarely(draw, 3) else draw(any_misspelling(keys))
        scaler_keys = ["init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled", "device"]
        cfg[name] = draw(st.one_of(
            st.sampled_from(["dynamic", "float16", "bfloat16", "float32", 512.0,
                             torch.float16, torch.int8, torch.bool]),
            st.dictionaries(st.sampled_from(scaler_keys), st.one_of(st.floats(0.5, 4.0), ANY_VALUE), max_size=3),
            ANY_VALUE,
        ))
        if draw(st.booleans()):  # float16 is the dtype that makes a GradScaler
            cfg.setdefault("dtype", "float16")
    return cfg


class ExampleTimeout(BaseException):
    """An example that takes this long fails the property.

    A BaseException, so that no ``except Exception`` on the way (a backend's
    import guard, say) can turn the hang into a ConfigError; the config is in
    the message since Hypothesis does not report such an example itself.
    """


@contextmanager
def time_limit(seconds: int, cfg: Any):
    if not hasattr(signal, "SIGALRM"):  # not Linux/macOS: no hang guard
        yield
        return

    def on_alarm(signum, frame):
        raise ExampleTimeout(f"building took more than {seconds} s: {cfg!r}")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def build_or_config_error(cfg: dict[str, Any]) -> None:
    """Build on a fresh SmallNet; only ConfigError may escape (any other exception fails the test)."""
    torch.manual_seed(0)
    model = SmallNet()
    with time_limit(EXAMPLE_TIMEOUT_S, cfg), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OptimizerConfigWarning, library notices: not the property
        try:
            wrapper = OptimWrapperConstructor(cfg)(model)
        except ConfigError as exc:
            assert str(exc).strip(), "a ConfigError must say what is wrong"
            return
    assert hasattr(wrapper, "optimizer") and wrapper.optimizer.param_groups


FUZZ = settings(
    max_examples=1500,
    deadline=None,  # the first build of a backend imports it; the hang guard is time_limit
    database=None,  # write nothing into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    # In CI the same examples every run, so a red run is the change's, not a new draw's; locally, new draws.
    derandomize=bool(os.environ.get("CI")),
)


@FUZZ
@given(optimizer=optimizer_cfgs())
def test_optimizer_cfg_builds_or_raises_config_error(optimizer):
    build_or_config_error({"optimizer": optimizer})


@FUZZ
@given(cfg=optim_wrapper_cfgs())
def test_optim_wrapper_cfg_builds_or_raises_config_error(cfg):
    build_or_config_error(cfg)


#: Runnable through OPTIMIZERS.build but not from a config yet: they take no lr, and the constructor needs one
#: to scale per group (their lr-free groups and an lr schedule with nothing to set are not handled).
TAKES_NO_LR = ("AliG", "SAMWrapper")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, raises=ConfigError, reason="takes no lr: the constructor needs one (TAKES_NO_LR)"))
    if n in TAKES_NO_LR else n for n in BUILT_TYPES])
def test_every_type_the_fuzzer_builds_does_build(name):
    """The pool is not all errors: each type builds with a sane config, so the fuzzer reaches its code."""
    cfg: dict[str, Any] = {"type": name, "lr": 0.01}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wrapper = OptimWrapperConstructor({"optimizer": cfg})(SmallNet())
        except ConfigError as exc:
            # What some types need beyond lr, as their listing notes say: bitsandbytes' SGD and LARS
            # refuse momentum=0; Adafactor-style optimizers refuse an lr with relative_step=True;
            # Ranger21 needs its run length.
            wrapper = OptimWrapperConstructor({"optimizer": _retried(cfg, exc)})(SmallNet())
    assert wrapper.optimizer.param_groups


RETRY_WITH = {"momentum": {"momentum": 0.9}, "relative_step": {"relative_step": False},
              "num_iterations": {"num_iterations": 100}, "needs rank": {"rank": 4},
              "num_data": {"num_data": 100}}


def _retried(cfg: dict[str, Any], exc: ConfigError) -> dict[str, Any]:
    """``cfg`` changed as its error says: a keyword it needs, its inner optimizer nested, or no lr."""
    message = str(exc)
    nested = re.search(r"wraps another optimizer: nest its config as (\w+)=", message)
    if nested:  # Lookahead, SAM...: the lr goes to the inner optimizer
        return {"type": cfg["type"], nested.group(1): {"type": "SGD", "lr": cfg["lr"], "momentum": 0.9}}
    if "unknown argument 'lr'" in message:  # AliG (max_lr), heavyball's SAMWrapper: no lr of their own
        return {"type": cfg["type"]}
    extra = next((kw for word, kw in RETRY_WITH.items() if word in message), None)
    assert extra is not None, exc
    return {**cfg, **extra}


def test_pools_are_not_empty():
    assert "AdamW" in BUILT_TYPES and "SGD" in BUILT_TYPES
    assert not any(_is_deepspeed(n) for n in BUILT_TYPES)
    assert {"OptimWrapper", "AmpOptimWrapper"} <= set(WRAPPER_NAMES)
    if not torch.cuda.is_available():
        assert "FusedLamb" in UNAVAILABLE_TYPES
