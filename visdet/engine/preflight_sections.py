"""The sections :mod:`visdet.engine.preflight` checks beyond types: loops, data loaders, runtime, model parts.

mmengine's Runner hands these sections to constructors (``EpochBasedTrainLoop(**train_cfg)``,
``DataLoader(**loader)``, ``set_randomness(**randomness)``) or reads a few keys out of them
(``auto_scale_lr``, ``env_cfg``, the heads' ``train_cfg``/``test_cfg``), so a misspelt key is
either a ``TypeError`` after the Runner has logged the whole config, or silently ignored.
Each check here compares a section with what its reader accepts -- the class's signature
where there is one, the keys the reading code uses where there is not -- and raises a
:class:`~visdet.errors.ConfigError` naming the dotted key, with a did-you-mean. Nothing is built.
"""
from __future__ import annotations

import logging
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

from mmengine.logging import print_log
from mmengine.registry import Registry

from visdet.utils.suggestions import suggestion_text
from visdet.utils.signatures import accepted_keywords
from visdet.errors import ConfigError

#: mmengine's ``INF``: a scheduler's default ``end`` (it follows the loop).
_INF = 1_000_000_000


# --- small helpers ------------------------------------------------------------

def describe(value: Any) -> str:
    """``'the string 'x''`` / ``'None (NoneType)'``, for messages about a wrong value."""
    return f"the string {value!r}" if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


def check_int(value: Any, key: str, low: int = 1, what: str = "a positive integer") -> None:
    """Refuse anything but an integer ``>= low`` (``True`` and ``2.0`` included: they are not counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"must be {what}, got {describe(value)}", key)


def check_bool(value: Any, key: str) -> None:
    """Refuse anything but True or False (``'False'`` is truthy)."""
    if not isinstance(value, bool):
        raise ConfigError(f"must be True or False, got {describe(value)}", key)


def check_keys(section: Mapping[str, Any], valid: tuple[str, ...] | list[str], key: str, reader: str) -> None:
    """Refuse keys of a plain dict (no ``type``) that ``reader`` does not read, with the closest valid one."""
    for name in section:
        if name not in valid:
            raise ConfigError(f"'{name}' is not read by {reader}{suggestion_text(name, valid)}\n"
                              f"Valid keys: {', '.join(valid)}", f"{key}.{name}")


def signature_names(cls: Any, given: tuple[str, ...] = ()) -> tuple[list[str], list[str], bool]:
    """(accepted keywords, required ones the config must give, open) of ``cls``; ``given`` are passed by the caller."""
    try:
        keywords = accepted_keywords(cls, skip_first=False)
    except (TypeError, ValueError):  # builtins without a signature
        return [], [], True
    names = [n for n in keywords.names if n != "self"]
    required = [n for n in keywords.required if n not in given and n != "self"]
    return names, required, keywords.open


def check_against(section: Mapping[str, Any], cls: Any, key: str, given: tuple[str, ...] = (),
                  extra: tuple[str, ...] = ("type", "_scope_"), list_given: bool = False) -> None:
    """Keys of ``section`` against ``cls``'s signature: unknown ones refused, required ones asked for.

    ``given`` are passed by the caller, so never required; they are left out of the valid list shown
    unless ``list_given`` (a default the config may still override, like a vis backend's save_dir).
    """
    names, required, is_open = signature_names(cls, given)
    owner = getattr(cls, "__name__", str(cls))
    if not is_open:
        for name in section:
            if name not in extra and name not in names:
                listed = names if list_given else [n for n in names if n not in given]
                raise ConfigError(f"{owner} has no argument '{name}'{suggestion_text(name, listed)}\n"
                                  f"Valid arguments: {', '.join(listed) or '(none)'}", f"{key}.{name}")
    missing = [n for n in required if n not in section]
    if missing:
        raise ConfigError(f"{owner} needs {', '.join(map(repr, missing))}; add it to the config", key)


def resolve_type(component: Mapping[str, Any], registry: Registry, key: str, what: str) -> Any:
    """The class a ``type`` names, or a ConfigError listing close names."""
    obj_type = component.get("type")
    if obj_type is None:
        raise ConfigError(f"{what} config has no 'type'", key)
    if not isinstance(obj_type, str):
        return obj_type  # a class given directly in a Python config
    found = registry.get(obj_type)
    if found is None:
        from visdet.registry import registered_names

        names = sorted(registered_names(registry))
        hint = suggestion_text(obj_type, names) or f"; known {what}s include {', '.join(names[:12])}"
        raise ConfigError(f"unknown {what} type '{obj_type}'{hint}", f"{key}.type")
    return found


def items(section: Any) -> Iterator[tuple[str, Any]]:
    """(suffix, item) pairs of a list (``[i]``) or dict (``.name``) of component configs."""
    if isinstance(section, Mapping):
        yield from ((f".{name}", item) for name, item in section.items())
    elif isinstance(section, (list, tuple)):
        yield from ((f"[{i}]", item) for i, item in enumerate(section))


def _as_dict(section: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"must be a dict, got {describe(section)}", key)
    return section


# --- loops --------------------------------------------------------------------

#: What Runner.build_*_loop passes itself (``default_args``): never required from the config.
_LOOP_GIVEN = ("runner", "dataloader", "evaluator")


def train_loop_class(train_cfg: Mapping[str, Any]) -> Any:
    """The loop class Runner.build_train_loop builds: ``type``, else ``by_epoch`` picks mmengine's Epoch/Iter loop."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

    from visdet.registry import LOOPS

    if "type" in train_cfg:
        return resolve_type(train_cfg, LOOPS, "train_cfg", "loop")
    return EpochBasedTrainLoop if train_cfg.get("by_epoch") else IterBasedTrainLoop


def check_loops(cfg: Mapping[str, Any], training: bool) -> None:
    """train_cfg against the loop class Runner.build_train_loop builds; each phase's three sections together."""
    train_cfg = cfg.get("train_cfg")
    if training and train_cfg is not None:
        train_cfg = _as_dict(train_cfg, "train_cfg")
        if "type" in train_cfg and "by_epoch" in train_cfg:
            raise ConfigError("give either 'type' (e.g. 'EpochBasedTrainLoop') or the shorthand 'by_epoch', "
                              "not both (the Runner refuses the pair)", "train_cfg.by_epoch")
        if "type" not in train_cfg:
            if "by_epoch" not in train_cfg:
                raise ConfigError("needs type='EpochBasedTrainLoop' (with max_epochs) or "
                                  "type='IterBasedTrainLoop' (with max_iters), or the shorthand by_epoch=True/False",
                                  "train_cfg")
            check_bool(train_cfg["by_epoch"], "train_cfg.by_epoch")
        cls = train_loop_class(train_cfg)
        # The Runner pops 'by_epoch' before calling the loop.
        check_against(train_cfg, cls, "train_cfg", _LOOP_GIVEN, extra=("type", "_scope_", "by_epoch"))
        for name in ("max_epochs", "max_iters", "val_interval"):
            if name in train_cfg:
                check_int(train_cfg[name], f"train_cfg.{name}")
        if "val_begin" in train_cfg:
            check_int(train_cfg["val_begin"], "train_cfg.val_begin", low=0, what="an integer >= 0")
    # val_cfg/test_cfg: visdet.evaluation.loop_config.check_eval_loops.
    # Runner.__init__ refuses a partial set with a ValueError: say which part is missing.
    phases = (("train", ("train_dataloader", "train_cfg", "optim_wrapper")),
              ("val", ("val_dataloader", "val_cfg", "val_evaluator")),
              ("test", ("test_dataloader", "test_cfg", "test_evaluator")))
    for phase, keys in phases:
        present = [k for k in keys if cfg.get(k) is not None]
        if present and len(present) < len(keys):
            missing = [k for k in keys if k not in present]
            one = len(missing) == 1
            raise ConfigError(f"{phase} needs {', '.join(keys)} together; {' and '.join(present)} "
                              f"{'is' if len(present) == 1 else 'are'} set but {' and '.join(missing)} "
                              f"{'is' if one else 'are'} not (set {'it' if one else 'them'}, "
                              f"or set {' and '.join(present)} to None)", missing[0])


# --- data loaders -------------------------------------------------------------

#: Keys mmengine's Runner.build_dataloader consumes itself before calling torch's DataLoader.
_LOADER_EXTRA = ("num_batch_per_epoch", "disable_subprocess_warning")


def check_loader_keys(loader: Mapping[str, Any], key: str) -> None:
    """A dataloader dict's own keys: torch DataLoader's keywords plus mmengine's, and their values."""
    import torch.utils.data

    from visdet.registry import DATA_SAMPLERS, FUNCTIONS

    names, _, _ = signature_names(torch.utils.data.DataLoader)
    valid = [*names, *_LOADER_EXTRA]
    check_keys(loader, valid, key, "the data loader (torch DataLoader plus mmengine's keys)")
    if "sampler" not in loader:
        raise ConfigError("needs a 'sampler', e.g. sampler=dict(type='DefaultSampler', shuffle=True) "
                          "(mmengine's Runner always builds one)", f"{key}.sampler")
    if "shuffle" in loader:
        raise ConfigError("is not read here: the Runner always passes a sampler, which torch does not allow "
                          "with shuffle; set sampler=dict(type='DefaultSampler', shuffle=...) instead",
                          f"{key}.shuffle")
    batch_sampler = loader.get("batch_sampler")
    if "batch_size" in loader:
        check_int(loader["batch_size"], f"{key}.batch_size")
    if "num_workers" in loader:
        check_int(loader["num_workers"], f"{key}.num_workers", low=0, what="an integer >= 0")
    for name in ("persistent_workers", "pin_memory", "drop_last"):
        if name in loader:
            check_bool(loader[name], f"{key}.{name}")
    if loader.get("persistent_workers") and not loader.get("num_workers"):
        raise ConfigError("needs num_workers > 0 (torch refuses persistent workers without worker processes)",
                          f"{key}.persistent_workers")
    if loader.get("prefetch_factor") is not None and not loader.get("num_workers"):
        raise ConfigError("needs num_workers > 0 (torch refuses it without worker processes); remove it or set "
                          "num_workers", f"{key}.prefetch_factor")
    if batch_sampler is not None and loader.get("drop_last"):
        raise ConfigError("cannot be used with a batch_sampler (torch refuses the pair); the batch sampler "
                          "decides which batches are dropped", f"{key}.drop_last")
    for name, given in (("sampler", ("dataset", "seed")), ("batch_sampler", ("sampler", "batch_size"))):
        sampler = loader.get(name)
        if isinstance(sampler, Mapping):
            cls = resolve_type(sampler, DATA_SAMPLERS, f"{key}.{name}", "sampler")
            check_against(sampler, cls, f"{key}.{name}", given)
    for name in ("collate_fn", "worker_init_fn"):
        function = loader.get(name)
        if isinstance(function, Mapping):
            func = resolve_type(function, FUNCTIONS, f"{key}.{name}", "function")
            # build_dataloader calls partial(func, **rest): the data batch / worker id come positionally.
            check_against(function, func, f"{key}.{name}", given=_positional(func))


def _positional(func: Any) -> tuple[str, ...]:
    """The first parameter's name (the data batch or worker id the DataLoader passes)."""
    import inspect

    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return ()
    return tuple(params[:1])


# --- runtime sections ---------------------------------------------------------

#: The keys Runner.scale_lr reads.
_AUTO_SCALE_LR_KEYS = ("enable", "base_batch_size", "rule")  # rule: visdet/engine/lr_scaling.py
#: The keys Runner.setup_env reads.
_ENV_KEYS = ("cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit")


def _check_flexible_auto_scale_lr(cfg: Mapping[str, Any], auto_scale_lr: Mapping[str, Any]) -> None:
    """Under ``runner_type`` (FlexibleRunner) mmengine's strategy scales the lr: linearly, by processes x batch_size.

    visdet's ``Runner.scale_lr`` (``rule``, ``accumulative_counts``) is not on
    that path, so what it would add is refused rather than silently dropped.
    """
    rule = auto_scale_lr.get("rule", "linear")
    optim_wrapper = cfg.get("optim_wrapper")
    counts = optim_wrapper.get("accumulative_counts", 1) if isinstance(optim_wrapper, Mapping) else 1
    if rule != "linear" or counts != 1:
        what = f"rule={rule!r}" if rule != "linear" else f"optim_wrapper.accumulative_counts={counts}"
        raise ConfigError(f"{what} is not applied under runner_type={cfg.get('runner_type')!r}: its strategy "
                          "scales the lr itself, linearly by processes x batch_size only; use rule='linear' "
                          "without accumulation there, or set the lr by hand", "auto_scale_lr")


def check_runtime_sections(cfg: Mapping[str, Any], training: bool) -> None:
    """auto_scale_lr, env_cfg, randomness, log_processor, visualizer: what the Runner reads from each."""
    from mmengine.runner import LogProcessor, Runner

    from visdet.registry import LOG_PROCESSORS, VISBACKENDS, VISUALIZERS

    auto_scale_lr = cfg.get("auto_scale_lr")
    if auto_scale_lr is not None:
        auto_scale_lr = _as_dict(auto_scale_lr, "auto_scale_lr")
        check_keys(auto_scale_lr, _AUTO_SCALE_LR_KEYS, "auto_scale_lr", "Runner.scale_lr")
        if "enable" in auto_scale_lr:
            check_bool(auto_scale_lr["enable"], "auto_scale_lr.enable")
        if "base_batch_size" in auto_scale_lr:
            check_int(auto_scale_lr["base_batch_size"], "auto_scale_lr.base_batch_size",
                      what="a positive integer (the total batch size the lr was tuned for)")
        if "rule" in auto_scale_lr:
            from visdet.engine.lr_scaling import RULES

            if auto_scale_lr["rule"] not in RULES:
                raise ConfigError(f"must be one of {', '.join(map(repr, RULES))} (how the lr follows the batch), "
                                  f"got {auto_scale_lr['rule']!r}", "auto_scale_lr.rule")
        if auto_scale_lr.get("enable") and cfg.get("runner_type") is not None:
            _check_flexible_auto_scale_lr(cfg, auto_scale_lr)
        if auto_scale_lr.get("enable"):
            if "base_batch_size" not in auto_scale_lr:
                raise ConfigError("needs base_batch_size (the total batch size the lr was tuned for) when "
                                  "enable=True", "auto_scale_lr.base_batch_size")
            loader = cfg.get("train_dataloader")
            if training and isinstance(loader, Mapping) and "batch_size" not in loader:
                raise ConfigError("is needed by auto_scale_lr (the lr is scaled by batch_size x processes / "
                                  "base_batch_size)", "train_dataloader.batch_size")

    _check_top_level_values(cfg)

    env_cfg = cfg.get("env_cfg")
    if env_cfg is not None:
        _check_env_cfg(_as_dict(env_cfg, "env_cfg"))

    randomness = cfg.get("randomness")
    if randomness is not None:
        randomness = _as_dict(randomness, "randomness")
        check_against(randomness, Runner.set_randomness, "randomness", extra=())
        seed = randomness.get("seed")
        if seed is not None:
            check_int(seed, "randomness.seed", low=0, what="an integer >= 0 or None")
        for name in ("diff_rank_seed", "deterministic"):
            if name in randomness:
                check_bool(randomness[name], f"randomness.{name}")

    log_processor = cfg.get("log_processor")
    if log_processor is not None:
        log_processor = _as_dict(log_processor, "log_processor")
        cls = resolve_type(log_processor, LOG_PROCESSORS, "log_processor", "log processor") \
            if "type" in log_processor else LogProcessor
        check_against(log_processor, cls, "log_processor")
        if "window_size" in log_processor and log_processor["window_size"] != "global":
            check_int(log_processor["window_size"], "log_processor.window_size",
                      what="a positive integer or 'global'")

    visualizer = cfg.get("visualizer")
    if visualizer is not None:
        visualizer = _as_dict(visualizer, "visualizer")
        cls = resolve_type(visualizer, VISUALIZERS, "visualizer", "visualizer")
        check_against(visualizer, cls, "visualizer")
        backends = visualizer.get("vis_backends") or []
        if isinstance(backends, Mapping):
            backends = [backends]
        for suffix, backend in items(backends):
            if isinstance(backend, Mapping):
                backend_key = f"visualizer.vis_backends{suffix}"
                backend_cls = resolve_type(backend, VISBACKENDS, backend_key, "vis backend")
                # Visualizer.__init__ pops 'name' and fills 'save_dir' itself.
                check_against(backend, backend_cls, backend_key, given=("save_dir",),
                              extra=("type", "_scope_", "name"), list_given=True)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_top_level_values(cfg: Mapping[str, Any]) -> None:
    """log_level, resume, compile, model_wrapper_cfg and the schedulers' begin/end: what the Runner passes on as is."""
    import torch

    from visdet.registry import MODEL_WRAPPERS, PARAM_SCHEDULERS

    log_level = cfg.get("log_level")
    if log_level is not None and not isinstance(log_level, int) and str(log_level).upper() not in _LOG_LEVELS:
        raise ConfigError(f"must be one of {', '.join(_LOG_LEVELS)}, got {describe(log_level)}"
                          f"{suggestion_text(str(log_level).upper(), _LOG_LEVELS)}", "log_level")
    if "resume" in cfg and cfg["resume"] is not None:
        check_bool(cfg["resume"], "resume")
    compile_cfg = cfg.get("compile")
    if compile_cfg is not None and not isinstance(compile_cfg, bool):
        compile_cfg = _as_dict(compile_cfg, "compile")
        # Runner._maybe_compile calls torch.compile(train_step, **compile).
        check_against(compile_cfg, torch.compile, "compile", given=("model",), extra=())
    wrapper = cfg.get("model_wrapper_cfg")
    if isinstance(wrapper, Mapping):
        cls = resolve_type(wrapper, MODEL_WRAPPERS, "model_wrapper_cfg", "model wrapper")
        check_against(wrapper, cls, "model_wrapper_cfg", given=("module",))
    schedulers = cfg.get("param_scheduler")
    if isinstance(schedulers, Mapping) and "type" in schedulers:
        schedulers = [schedulers]
    for suffix, scheduler in items(schedulers or []):
        if not isinstance(scheduler, Mapping):
            continue
        key = f"param_scheduler{suffix}"
        begin, end = scheduler.get("begin", 0), scheduler.get("end", _INF)
        for name, value in (("begin", begin), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
                raise ConfigError(f"must be a number >= 0 (an epoch, or an iteration when by_epoch=False), "
                                  f"got {describe(value)}", f"{key}.{name}")
        if end <= begin:
            raise ConfigError(f"must be larger than begin ({begin}), got {end}; the scheduler would never run",
                              f"{key}.end")
        if isinstance(scheduler.get("type"), str) and PARAM_SCHEDULERS.get(scheduler["type"]) is not None:
            by_epoch = scheduler.get("by_epoch", True)
            if not isinstance(by_epoch, bool):
                check_bool(by_epoch, f"{key}.by_epoch")
            if scheduler.get("convert_to_iter_based") and not by_epoch:
                raise ConfigError("needs by_epoch=True: it converts an epoch schedule to per-iteration steps",
                                  f"{key}.convert_to_iter_based")


def _check_env_cfg(env_cfg: Mapping[str, Any]) -> None:
    import multiprocessing

    import torch.distributed
    from mmengine.utils.dl_utils import set_multi_processing

    check_keys(env_cfg, _ENV_KEYS, "env_cfg", "Runner.setup_env")
    if "cudnn_benchmark" in env_cfg:
        check_bool(env_cfg["cudnn_benchmark"], "env_cfg.cudnn_benchmark")
    mp_cfg = env_cfg.get("mp_cfg")
    if mp_cfg is not None:
        mp_cfg = _as_dict(mp_cfg, "env_cfg.mp_cfg")
        # setup_env calls set_multi_processing(**mp_cfg, distributed=...).
        check_against(mp_cfg, set_multi_processing, "env_cfg.mp_cfg", given=("distributed",), extra=())
        method = mp_cfg.get("mp_start_method")
        methods = multiprocessing.get_all_start_methods()
        if method is not None and method not in methods:
            raise ConfigError(f"must be one of {', '.join(map(repr, methods))} on this machine, got {method!r}"
                              f"{suggestion_text(str(method), methods)}", "env_cfg.mp_cfg.mp_start_method")
        if "opencv_num_threads" in mp_cfg:
            check_int(mp_cfg["opencv_num_threads"], "env_cfg.mp_cfg.opencv_num_threads", low=0,
                      what="an integer >= 0")
    dist_cfg = env_cfg.get("dist_cfg")
    if dist_cfg is not None:
        dist_cfg = _as_dict(dist_cfg, "env_cfg.dist_cfg")
        # init_dist(launcher, backend, init_backend, **kwargs) passes the rest to init_process_group.
        names, _, _ = signature_names(torch.distributed.init_process_group)
        check_keys(dist_cfg, ["backend", "init_backend", *[n for n in names if n != "backend"]],
                   "env_cfg.dist_cfg", "mmengine's init_dist (and torch.distributed.init_process_group)")
        if "timeout" in dist_cfg and not (isinstance(dist_cfg["timeout"], numbers.Real)
                                          and not isinstance(dist_cfg["timeout"], bool)
                                          and dist_cfg["timeout"] > 0):
            raise ConfigError(f"must be a positive number of seconds, got {describe(dist_cfg['timeout'])}",
                              "env_cfg.dist_cfg.timeout")


# --- the model, recursively -------------------------------------------------------

def _registries() -> dict[str, Registry]:
    """Which registry each nested model key is built from (the heads call build_component with these)."""
    from visdet.registry import MODELS, TASK_UTILS

    return {
        **dict.fromkeys(("data_preprocessor", "backbone", "neck", "rpn_head", "roi_head", "bbox_roi_extractor",
                         "bbox_head", "loss_cls", "loss_bbox"), MODELS),
        **dict.fromkeys(("anchor_generator", "bbox_coder", "assigner", "sampler"), TASK_UTILS),
    }


#: Dicts with a 'type' that their owner reads itself instead of building from a registry:
#: SingleRoIExtractor checks roi_layer, ResNet builds norm_cfg with build_norm_layer, the heads read nms.
_HAND_READ = frozenset({"roi_layer", "norm_cfg", "conv_cfg", "act_cfg", "nms"})
#: Arguments a parent passes to a part it builds (TwoStageDetector: train_cfg/test_cfg/num_classes to the
#: RPN head; the heads: context=self to their sampler).
_GIVEN_BY_PARENT = {"rpn_head": ("train_cfg", "test_cfg", "num_classes"), "roi_head": ("train_cfg", "test_cfg"),
                    "sampler": ("context",)}


def check_model_tree(model: Mapping[str, Any]) -> Any:
    """Every nested part of the model: type resolved in its registry, keys against its class; the detector class."""
    from visdet.registry import MODELS

    _as_dict(model, "model")
    cls = resolve_type(model, MODELS, "model", "model")
    check_against(model, cls, "model")
    _walk(model, "model", skip=("train_cfg", "test_cfg", "type", "_scope_"))
    return cls


def _walk(component: Mapping[str, Any], key: str, skip: tuple[str, ...] = ("type", "_scope_")) -> None:
    registries = _registries()
    for name, value in component.items():
        if name in skip or name in _HAND_READ:
            continue
        path = f"{key}.{name}"
        if name == "init_cfg":
            check_init_cfg(value, path)
            continue
        if not (isinstance(value, Mapping) and "type" in value):
            continue
        registry = registries.get(name)
        if registry is None:  # a part this table does not know: the registry that has its type
            registry = _registry_with(value["type"]) or registries["backbone"]
        cls = resolve_type(value, registry, path, "model part" if name not in ("assigner", "sampler") else name)
        check_against(value, cls, path, given=_GIVEN_BY_PARENT.get(name, ()))
        _walk(value, path)


def _registry_with(obj_type: Any) -> Registry | None:
    from visdet.registry import MODELS, TASK_UTILS

    if not isinstance(obj_type, str):
        return None
    return next((r for r in (MODELS, TASK_UTILS) if r.get(obj_type) is not None), None)


def check_init_cfg(init_cfg: Any, key: str) -> None:
    """mmengine initializers: type in WEIGHT_INITIALIZERS, keys against the initializer (plus 'override')."""
    from visdet.registry import WEIGHT_INITIALIZERS

    if init_cfg is None:
        return
    entries = list(items(init_cfg)) if isinstance(init_cfg, (list, tuple)) else [("", init_cfg)]
    for suffix, entry in entries:
        entry = _as_dict(entry, f"{key}{suffix}")
        cls = resolve_type(entry, WEIGHT_INITIALIZERS, f"{key}{suffix}", "initializer")
        check_against(entry, cls, f"{key}{suffix}", extra=("type", "_scope_", "override"))


# --- the detector's train_cfg/test_cfg ------------------------------------------------

#: The plain keys visdet's two-stage heads read (cfg_get calls in visdet/models: RPNHead.__init__/loss_by_feat/
#: predict_by_feat, StandardRoIHead.__init__/loss, Shared2FCBBoxHead.predict_single, TwoStageDetector.loss).
#: 'debug' is mmdet's (read by nothing, kept so MMDetection configs load).
TWO_STAGE_CFG_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "train_cfg": {
        "rpn": ("assigner", "sampler", "allowed_border", "pos_weight", "debug"),
        "rpn_proposal": ("nms_pre", "max_per_img", "nms", "min_bbox_size"),
        "rcnn": ("assigner", "sampler", "pos_weight", "debug"),
    },
    "test_cfg": {
        "rpn": ("nms_pre", "max_per_img", "nms", "min_bbox_size"),
        "rcnn": ("score_thr", "nms", "max_per_img"),
    },
}
#: Who reads each part, for messages.
_READERS = {("train_cfg", "rpn"): "RPNHead (training)", ("train_cfg", "rpn_proposal"): "RPNHead (training proposals)",
            ("train_cfg", "rcnn"): "StandardRoIHead (training)", ("test_cfg", "rpn"): "RPNHead (inference proposals)",
            ("test_cfg", "rcnn"): "Shared2FCBBoxHead (inference)"}
#: visdet.models.utils.nms_iou_threshold reads these (plain NMS only).
NMS_KEYS = ("type", "iou_threshold")


def check_detector_cfgs(model: Mapping[str, Any], detector: Any) -> None:
    """model.train_cfg/test_cfg of a two-stage detector against the keys its heads read."""
    from visdet.models.detectors.two_stage import TwoStageDetector
    from visdet.registry import TASK_UTILS

    if not (isinstance(detector, type) and issubclass(detector, TwoStageDetector)):
        return
    for section, parts in TWO_STAGE_CFG_KEYS.items():
        cfg = model.get(section)
        if cfg is None:
            continue
        key = f"model.{section}"
        cfg = _as_dict(cfg, key)
        check_keys(cfg, list(parts), key, f"{detector.__name__} (it hands each part to a head)")
        for part, valid in parts.items():
            sub = cfg.get(part)
            if sub is None:
                continue
            part_key = f"{key}.{part}"
            sub = _as_dict(sub, part_key)
            check_keys(sub, list(valid), part_key, _READERS[section, part])
            for name in ("assigner", "sampler"):
                if name in sub:
                    component = _as_dict(sub[name], f"{part_key}.{name}")
                    cls = resolve_type(component, TASK_UTILS, f"{part_key}.{name}", name)
                    check_against(component, cls, f"{part_key}.{name}", given=_GIVEN_BY_PARENT.get(name, ()))
            nms = sub.get("nms")
            if nms is not None:
                nms = _as_dict(nms, f"{part_key}.nms")
                check_keys(nms, list(NMS_KEYS), f"{part_key}.nms", "visdet's NMS")
                if nms.get("type", "nms") != "nms":
                    raise ConfigError(f"NMS type {nms['type']!r} is not supported; use 'nms'", f"{part_key}.nms.type")
                if "iou_threshold" not in nms:
                    raise ConfigError("needs 'iou_threshold', e.g. dict(type='nms', iou_threshold=0.7)",
                                      f"{part_key}.nms")


# --- num_classes against the data set ---------------------------------------------------

def dataset_classes(dataset: Any, key: str) -> tuple[tuple[str, ...], str] | None:
    """The class names a dataset config trains on and where they come from; None when unknown.

    ``metainfo=dict(classes=...)`` first, else the dataset class's ``METAINFO`` default;
    wrappers (RepeatDataset, ClassBalancedDataset: a nested ``dataset``) are looked through.
    """
    from visdet.registry import DATASETS

    if not isinstance(dataset, Mapping):
        return None
    metainfo = dataset.get("metainfo")
    if isinstance(metainfo, Mapping) and isinstance(metainfo.get("classes"), (list, tuple)):
        return tuple(metainfo["classes"]), f"{key}.metainfo.classes"
    if isinstance(dataset.get("dataset"), Mapping):
        return dataset_classes(dataset["dataset"], f"{key}.dataset")
    obj_type = dataset.get("type")
    cls = DATASETS.get(obj_type) if isinstance(obj_type, str) else obj_type
    classes = getattr(cls, "METAINFO", {}).get("classes") if cls is not None else None
    if isinstance(classes, (list, tuple)):
        return tuple(classes), f"{getattr(cls, '__name__', cls)}.METAINFO['classes'] (the default; {key} sets none)"
    return None


def check_num_classes(cfg: Mapping[str, Any], training: bool) -> None:
    """model.roi_head.bbox_head.num_classes must equal the number of classes of the data the run uses."""
    model = cfg.get("model")
    bbox_head = model.get("roi_head", {}).get("bbox_head") if isinstance(model, Mapping) and isinstance(
        model.get("roi_head"), Mapping) else None
    if not isinstance(bbox_head, Mapping):
        return
    from visdet.registry import MODELS

    head_cls = MODELS.get(bbox_head.get("type")) if isinstance(bbox_head.get("type"), str) else None
    num_classes = bbox_head.get("num_classes")
    if num_classes is None and isinstance(head_cls, type):
        num_classes = accepted_keywords(head_cls, skip_first=False).defaults.get("num_classes")
    if num_classes is None:
        return
    key = "model.roi_head.bbox_head.num_classes"
    check_int(num_classes, key)
    loader_key = "train_dataloader" if training else "test_dataloader"
    loader = cfg.get(loader_key)
    if not isinstance(loader, Mapping):
        return
    found = dataset_classes(loader.get("dataset"), f"{loader_key}.dataset")
    if found is None:
        return
    classes, source = found
    if num_classes != len(classes):
        shown = ", ".join(classes[:10]) + (f", ... ({len(classes) - 10} more)" if len(classes) > 10 else "")
        explicit = "" if "num_classes" in bbox_head else " (the class's default)"
        raise ConfigError(
            f"is {num_classes}{explicit}, but the {'training' if training else 'test'} data set has "
            f"{len(classes)} classes ({source}: {shown}); set {key}={len(classes)}", key)


# --- warnings: a schedule shorter or longer than training; frozen random stages -------------------

def loop_length(cfg: Mapping[str, Any]) -> tuple[int, bool] | None:
    """(max_epochs, True) or (max_iters, False) of the train loop; None for a loop visdet cannot read."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

    train_cfg = cfg.get("train_cfg")
    if not isinstance(train_cfg, Mapping):
        return None
    cls = train_loop_class(train_cfg)
    if isinstance(cls, type) and issubclass(cls, EpochBasedTrainLoop) and isinstance(train_cfg.get("max_epochs"), int):
        return train_cfg["max_epochs"], True
    if isinstance(cls, type) and issubclass(cls, IterBasedTrainLoop) and isinstance(train_cfg.get("max_iters"), int):
        return train_cfg["max_iters"], False
    return None


def schedule_warnings(cfg: Mapping[str, Any]) -> list[str]:
    """Messages for param_scheduler entries whose ``end`` does not meet the end of training.

    A scheduler's ``end`` is counted in epochs when ``by_epoch`` (``convert_to_iter_based`` only changes how
    often it steps) and in iterations otherwise; the default, mmengine's INF, follows the loop. Only the
    schedulers counted in the loop's unit are compared (an iteration warmup in an epoch loop cannot be
    without the data set's length). A schedule may end early only by returning to the base value (a
    warmup: LinearLR with end_factor=1, ConstantLR): training then goes on at the optimizer's own lr.
    """
    from visdet.registry import PARAM_SCHEDULERS

    length = loop_length(cfg)
    schedulers = cfg.get("param_scheduler")
    if length is None or not schedulers:
        return []
    total, by_epoch_loop = length
    unit, loop_key = ("epoch", "train_cfg.max_epochs") if by_epoch_loop else ("iteration", "train_cfg.max_iters")
    if isinstance(schedulers, Mapping) and "type" in schedulers:
        schedulers = [schedulers]
    ends: list[tuple[str, int, bool]] = []
    for suffix, scheduler in items(schedulers):
        if not isinstance(scheduler, Mapping) or not isinstance(scheduler.get("type"), str):
            continue
        cls = PARAM_SCHEDULERS.get(scheduler["type"])
        defaults = accepted_keywords(cls, skip_first=False).defaults if cls is not None else {}
        if bool(scheduler.get("by_epoch", defaults.get("by_epoch", True))) != by_epoch_loop:
            continue
        end = scheduler.get("end", defaults.get("end", _INF))
        if isinstance(end, numbers.Real) and not isinstance(end, bool):
            ends.append((f"param_scheduler{suffix}", end, _returns_to_base(scheduler, defaults)))
    decaying = [end for _, end, to_base in ends if not to_base]
    last = max(decaying, default=None)
    messages = []
    variable = (f"; a config's max_epochs variable is read once, so overriding {loop_key} alone does not move "
                f"the schedule's end") if by_epoch_loop else ""
    for key, end, _ in ends:
        index = key[len("param_scheduler"):].strip("[].")
        option = f"--cfg-options param_scheduler.{index}.end={total}"
        if last is not None and end == last and end < total:
            messages.append(
                f"{key}.end: the schedule ends at {unit} {end:g}, but training runs {total} {unit}s "
                f"({loop_key}={total}): the last {total - end:g} {unit}(s) train at the schedule's final value. "
                f"Set {key}.end={total} to stretch it ({option}){variable}")
        elif _INF > end > total:
            messages.append(
                f"{key}.end: the schedule ends at {unit} {end:g}, but training stops after {total} {unit}s "
                f"({loop_key}={total}): it is cut off before its final value. Set {key}.end={total} to fit it "
                f"({option})")
    return messages


def _returns_to_base(scheduler: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
    """Whether a scheduler ends at the base value (a warmup), so ending before training is by design."""
    name = str(scheduler.get("type", ""))
    if name.startswith("Constant") or "Warmup" in name:
        return True
    return name.startswith("Linear") and scheduler.get("end_factor", defaults.get("end_factor", 1.0)) == 1.0


def pretrained_weights(cfg: Mapping[str, Any]) -> bool:
    """Whether the run starts from trained weights: an init_cfg Pretrained (backbone or model), load_from or resume."""
    model = cfg.get("model") if isinstance(cfg.get("model"), Mapping) else {}
    backbone = model.get("backbone") if isinstance(model.get("backbone"), Mapping) else {}

    def is_pretrained(init_cfg: Any) -> bool:
        entries = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
        return any(isinstance(e, Mapping) and e.get("type") == "Pretrained" for e in entries)

    return bool(is_pretrained(backbone.get("init_cfg")) or is_pretrained(model.get("init_cfg"))
                or cfg.get("load_from") or cfg.get("resume"))


def frozen_backbone_warnings(cfg: Mapping[str, Any]) -> list[str]:
    """Messages for a backbone that freezes stages or BatchNorm statistics of random weights."""
    from visdet.registry import MODELS

    model = cfg.get("model")
    backbone = model.get("backbone") if isinstance(model, Mapping) else None
    if not isinstance(backbone, Mapping) or pretrained_weights(cfg):
        return []
    cls = MODELS.get(backbone.get("type")) if isinstance(backbone.get("type"), str) else None
    defaults = accepted_keywords(cls, skip_first=False).defaults if isinstance(cls, type) else {}
    messages = []
    frozen = backbone.get("frozen_stages", defaults.get("frozen_stages", -1))
    if isinstance(frozen, int) and not isinstance(frozen, bool) and frozen >= 0:
        stages = {0: "the stem", 1: "the stem and stage 1"}.get(frozen, f"the stem and stages 1-{frozen}")
        messages.append(
            f"model.backbone.frozen_stages: is {frozen}, which freezes {stages}, but nothing loads trained "
            f"weights (no init_cfg=dict(type='Pretrained', checkpoint=...) and no load_from): those layers stay "
            f"random for the whole run. Set model.backbone.frozen_stages=-1 to train from scratch, or give "
            f"pretrained weights")
    if backbone.get("norm_eval", defaults.get("norm_eval", False)) is True:
        messages.append(
            "model.backbone.norm_eval: is True, which keeps every BatchNorm's running statistics fixed, but "
            "nothing loads trained weights: they stay at their initial values (mean 0, variance 1). Set "
            "model.backbone.norm_eval=False to train from scratch, or give pretrained weights")
    return messages


def warn(messages: list[str]) -> None:
    """Log each message as a WARNING on mmengine's current logger (the Runner's, once it exists)."""
    for message in messages:
        print_log(message, logger="current", level=logging.WARNING)
