"""Checks a whole config before the Runner builds anything, so mistakes cost seconds, not a run.

mmengine's Runner ignores top-level keys it does not know (a misspelt
``optim_wraper`` silently trains with no optimizer config), reports an unknown
``type`` as a bare ``KeyError`` and a misspelt argument as a ``TypeError``
from deep inside the build, sometimes after the model and data are loaded.
These checks walk the config once, resolve every ``type`` in the sections the
Runner builds against visdet's registries, compare each component's keys with
what its class accepts, and run the optimizer constructor's own validation --
all without building a model or reading data.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from mmengine.registry import Registry

from visdet.utils.suggestions import suggestion_text
from visdet.utils.signatures import accepted_keywords
from visdet.engine.preflight_sections import (check_detector_cfgs, items, resolve_type, check_loader_keys, check_loops,
                                              check_model_tree, check_num_classes, check_runtime_sections,
                                              frozen_backbone_warnings, schedule_warnings, warn)
from visdet.errors import ConfigError

# Keys Runner.from_cfg reads, plus the ones visdet's tools read.
RUNNER_KEYS = frozenset({
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg",
    "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator", "test_evaluator",
    "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "resume", "launcher", "env_cfg",
    "log_processor", "log_level", "visualizer", "default_scope", "randomness", "experiment_name",
    "runner_type", "embedded_data", "model_wrapper_cfg", "find_unused_parameters", "sync_bn", "compile",
    "strategy", "cfg", "resume_optimizer",
})
# A top-level key this close to a runner key is a typo, not a helper variable like ``data_root``.
_TYPO_CUTOFF = 0.85


def check_top_level_keys(cfg: Mapping[str, Any], training: bool = True) -> None:
    """Refuse top-level keys that look like misspelt runner keys, and (for training) a config with nothing to train."""
    for key in cfg:
        if key in RUNNER_KEYS or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, RUNNER_KEYS, n=1, cutoff=_TYPO_CUTOFF)
        if close:
            raise ConfigError(
                f"the runner does not read '{key}'; did you mean '{close[0]}'? "
                f"(a misspelt key is otherwise ignored silently)", key)
    needed = ("model", "train_dataloader", "train_cfg", "optim_wrapper") if training else (
        "model", "test_dataloader", "test_evaluator")
    missing = [key for key in needed if key not in cfg]
    if missing:
        raise ConfigError(f"the config has no {', '.join(map(repr, missing))}; "
                          f"{'training' if training else 'evaluation'} needs {', '.join(needed[:-1])} and {needed[-1]}")


def check_arguments(component: Mapping[str, Any], cls: Any, key: str, extra: tuple[str, ...] = ()) -> None:
    """Refuse keys ``cls`` cannot accept, with the closest valid ones; silent when it takes **kwargs onward."""
    if not callable(cls):
        return
    try:
        keywords = accepted_keywords(cls, skip_first=False)
    except (TypeError, ValueError):  # builtins without a signature
        return
    if keywords.open:
        return
    valid = ["type", *extra, *keywords.names]
    unknown = [name for name in component if name not in valid]
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"{getattr(cls, '__name__', cls)} has no argument '{name}'{suggestion_text(name, keywords.names)}\n"
            f"Valid arguments: {', '.join(n for n in keywords.names if n != 'self') or '(none)'}",
            f"{key}.{name}")


def _check(component: Any, registry: Registry, key: str, what: str, extra: tuple[str, ...] = ()) -> Any:
    if not isinstance(component, Mapping):
        raise ConfigError(f"expected a dict with a 'type', got {type(component).__name__}", key)
    cls = resolve_type(component, registry, key, what)
    check_arguments(component, cls, key, extra)
    return cls


def check_dataloader(loader: Mapping[str, Any], key: str) -> None:
    """Types and arguments of a dataloader's data set, pipeline and sampler."""
    dataset = loader.get("dataset")
    if dataset is None:
        raise ConfigError("a dataloader needs a 'dataset'", key)
    check_dataset(dataset, f"{key}.dataset")
    check_loader_keys(loader, key)  # torch DataLoader + mmengine keys, samplers, collate_fn


def check_dataset(dataset: Any, key: str) -> None:
    """A data set's type, arguments and pipeline; wrappers' inner ``dataset``/``datasets`` too (RepeatDataset...)."""
    from visdet.registry import DATASETS, TRANSFORMS

    _check(dataset, DATASETS, key, "dataset")
    for suffix, transform in items(dataset.get("pipeline", [])):
        if isinstance(transform, Mapping):
            _check(transform, TRANSFORMS, f"{key}.pipeline{suffix}", "transform")
    if isinstance(dataset.get("dataset"), Mapping):
        check_dataset(dataset["dataset"], f"{key}.dataset")
    for suffix, inner in items(dataset.get("datasets") if isinstance(dataset.get("datasets"), list) else []):
        if isinstance(inner, Mapping):
            check_dataset(inner, f"{key}.datasets{suffix}")


def check_model(model: Any) -> None:
    """The detector and every nested part (heads, losses, anchor generator, ...), then its train_cfg/test_cfg."""
    detector = check_model_tree(model)
    check_detector_cfgs(model, detector)


def check_runtime(cfg: Mapping[str, Any]) -> None:
    """Hooks, parameter schedulers and evaluators."""
    from visdet.registry import HOOKS, METRICS, PARAM_SCHEDULERS

    for section, registry, what in (("default_hooks", HOOKS, "hook"), ("custom_hooks", HOOKS, "hook"),
                                    ("param_scheduler", PARAM_SCHEDULERS, "parameter scheduler")):
        section_cfg = cfg.get(section)
        if isinstance(section_cfg, Mapping) and "type" in section_cfg:  # a single scheduler given as a dict
            section_cfg = [section_cfg]
        for suffix, item in items(section_cfg or []):
            if item is not None:
                # The Runner consumes 'priority' (hooks) and 'convert_to_iter_based' (schedulers) itself.
                extra = ("priority",) if what == "hook" else ("convert_to_iter_based",)
                _check(item, registry, f"{section}{suffix}", what, extra=extra)
    for section in ("val_evaluator", "test_evaluator"):
        evaluator = cfg.get(section)
        for suffix, metric in (items(evaluator) if isinstance(evaluator, list) else [("", evaluator)]):
            if isinstance(metric, Mapping):
                _check(metric, METRICS, f"{section}{suffix}", "metric")


def check_optim_wrapper(cfg: Mapping[str, Any]) -> None:
    """Run the optimizer constructor's validation (it needs no model)."""
    from visdet.engine.strategies import register, uses_flexible_runner
    from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

    if cfg.get("strategy") is not None or uses_flexible_runner(cfg):
        register()  # a strategy's optim wrapper (DeepSpeedOptimWrapper) is registered with the strategies
    optim_wrapper = dict(cfg["optim_wrapper"])
    constructor = optim_wrapper.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = optim_wrapper.pop("paramwise_cfg", None)
    OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=constructor, optim_wrapper_cfg=optim_wrapper, paramwise_cfg=paramwise_cfg))


def check_config(cfg: Mapping[str, Any], training: bool = True) -> None:
    """Every check above, in the order a user would fix them; raises ConfigError on the first mistake.

    ``training=False`` (``tools/test.py``) leaves out the optimizer: evaluation
    never builds it, so one that cannot run here (a CUDA-only optimizer on a
    CPU machine) must not stop a checkpoint from being evaluated.
    """
    from mmengine.registry import DefaultScope

    from visdet.engine.mmdet_compat import check_known_types, check_scope

    check_scope(cfg)  # an untranslated default_scope='mmdet' would make the Runner build from mmengine's registries
    scope = cfg.get("default_scope", "visdet")
    with DefaultScope.overwrite_default_scope(scope):
        check_top_level_keys(cfg, training)
        check_known_types(cfg)  # every type visdet lacks in one message (MMDetection configs)
        check_model(cfg["model"])
        check_num_classes(cfg, training)
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            if isinstance(cfg.get(key), Mapping):
                check_dataloader(cfg[key], key)
        check_runtime(cfg)
        from visdet.engine.hooks.ema_checks import check_ema_hooks, ema_warnings
        check_ema_hooks(cfg)  # ema_type, momentum, begin_*: what mmengine's EMAHook asserts or passes on
        check_runtime_sections(cfg, training)  # auto_scale_lr, env_cfg, randomness, log_processor, visualizer
        check_loops(cfg, training)
        from visdet.evaluation.loop_config import check_eval_loops  # val_cfg/test_cfg: keys, fp16 on this device
        check_eval_loops(cfg, training)
        if not training:
            return
        from visdet.engine.optim.catalog.availability import assume_met
        from visdet.engine.optim.catalog.spec import Need

        # A launched run's process group exists only once the Runner is built, after this check.
        distributed = (Need.DISTRIBUTED,) if cfg.get("launcher", "none") != "none" else ()
        with assume_met(*distributed, *_engine_built_by_strategy(cfg)):
            check_optim_wrapper(cfg)
        # Warnings last: a config that still has a mistake gets only the error.
        warn(schedule_warnings(cfg) + frozen_backbone_warnings(cfg))
        warn(ema_warnings(cfg))  # an EMA of a schedule-free optimizer's average; a large EMA momentum


def _engine_built_by_strategy(cfg: Mapping) -> tuple:
    """``Need.DEEPSPEED_ENGINE`` when a DeepSpeed strategy will hand this optimizer to DeepSpeed's engine.

    The 1-bit family (catalogue records with an ``engine_name``) is built by
    ``deepspeed.initialize`` from the strategy's config, after this check; other
    engine-only optimizers (ZenFlow's) are not, so they stay refused.
    """
    from visdet.engine.optim.catalog.spec import Need
    from visdet.engine.strategies.lookup import optimizer_spec

    strategy = cfg.get("strategy")
    if not (isinstance(strategy, Mapping) and "DeepSpeed" in str(strategy.get("type", ""))):
        return ()
    optim_wrapper = cfg.get("optim_wrapper")
    optimizer = optim_wrapper.get("optimizer") if isinstance(optim_wrapper, Mapping) else None
    name = optimizer.get("type") if isinstance(optimizer, Mapping) else None
    spec = optimizer_spec(name) if isinstance(name, str) else None
    return (Need.DEEPSPEED_ENGINE,) if spec is not None and spec.engine_name else ()
