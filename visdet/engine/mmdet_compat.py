"""MMDetection 3.x configs as visdet's: the ``mmdet`` scope translated, and every type visdet lacks named at once.

MMDetection's configs say ``default_scope='mmdet'`` (and sometimes
``_scope_='mmdet'`` or ``type='mmdet.FasterRCNN'``). mmengine's registries
then look for a registry tree node called ``mmdet``; without MMDetection
installed there is none, mmengine falls back to its own root registries, and
the Runner fails with ``KeyError: 'FasterRCNN is not in the mmengine::model
registry'`` after the check passed. visdet registers MMDetection's names for
the parts it has, so such a config is visdet's once its scope is: when the
real ``mmdet`` package is not importable, :func:`translate_mmdet_scope`
rewrites the scope when the config is loaded (and logs that it did). A config
that still names ``mmdet`` at check time (built in Python, not loaded by
``visdet.engine.launch.load_config``) is refused with the one-line fix.

The pre-flight check stops at its first mistake; an MMDetection config often
uses several components visdet does not have, so :func:`check_known_types`
walks every section first and names all such types in one message.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import Registry

from visdet.errors import ConfigError
from visdet.utils.suggestions import suggestion_text

MMDET = "mmdet"
VISDET = "visdet"

#: What visdet has for MMDetection components it does not (the commonest in MMDetection 3.x configs).
INSTEAD = {
    "RandomResize": "Resize", "RandomChoiceResize": "Resize", "FixShapeResize": "Resize",
    "RetinaNet": "FasterRCNN", "MaskRCNN": "FasterRCNN", "CascadeRCNN": "FasterRCNN", "FCOS": "FasterRCNN",
    "DETR": "FasterRCNN", "DINO": "FasterRCNN", "RTMDet": "FasterRCNN", "YOLOX": "FasterRCNN",
    "GIoULoss": "L1Loss or SmoothL1Loss", "IoULoss": "L1Loss or SmoothL1Loss", "FocalLoss": "CrossEntropyLoss",
    "PseudoSampler": "RandomSampler", "OHEMSampler": "RandomSampler", "ATSSAssigner": "MaxIoUAssigner",
    "VOCDataset": "CocoDataset (with a COCO-format annotation file)", "VOCMetric": "CocoMetric",
    "LVISV1Dataset": "CocoDataset", "CocoPanopticDataset": "CocoDataset", "ResNeXt": "ResNet",
}
#: Dicts with a 'type' that their owner reads itself (preflight_sections' _HAND_READ): never registry lookups.
HAND_READ = frozenset({"roi_layer", "norm_cfg", "conv_cfg", "act_cfg", "nms", "dcn", "plugins"})


def mmdet_installed() -> bool:
    """Whether the real MMDetection package can be imported here (then its configs are left to it)."""
    if importlib.util.find_spec(MMDET) is None:
        return False
    try:
        importlib.import_module(f"{MMDET}.registry")
    except Exception:  # a broken install: its registries are not there, so the configs cannot be its
        return False
    return True


def _scoped_entries(node: Any, path: str = "") -> Iterator[tuple[Any, str, str]]:
    """(container, key, path) of every ``_scope_='mmdet'`` and ``type='mmdet.X'`` below ``node``."""
    if isinstance(node, Config):  # not a Mapping: its dict is
        node = node._cfg_dict
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_scope_" and value == MMDET:
                yield node, key, where
            elif key == "type" and isinstance(value, str) and value.startswith(MMDET + "."):
                yield node, key, where
            else:
                yield from _scoped_entries(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _scoped_entries(value, f"{path}[{i}]")


def uses_mmdet_scope(cfg: Mapping[str, Any]) -> bool:
    """Whether the config names MMDetection's scope anywhere (default_scope, _scope_ or an 'mmdet.' type)."""
    return cfg.get("default_scope") == MMDET or next(_scoped_entries(cfg), None) is not None


def translate_mmdet_scope(cfg: MutableMapping[str, Any]) -> bool:
    """Read an MMDetection-scoped config as visdet's, in place; True when something was translated.

    ``default_scope='mmdet'`` becomes ``'visdet'``, ``_scope_='mmdet'`` becomes
    ``'visdet'`` and ``type='mmdet.X'`` becomes ``'X'``, with one INFO line
    saying so. Left alone when MMDetection itself is installed: its registries
    are then the ones the config means.
    """
    if not uses_mmdet_scope(cfg) or mmdet_installed():
        return False
    entries = list(_scoped_entries(cfg))
    for container, key, _ in entries:
        container[key] = VISDET if key == "_scope_" else container[key][len(MMDET) + 1:]
    if cfg.get("default_scope") == MMDET:
        cfg["default_scope"] = VISDET
    added = add_plain_checkpoints(cfg)
    shown = ", ".join(path for _, _, path in entries[:5]) + (", ..." if len(entries) > 5 else "")
    print_log(f"default_scope='{MMDET}': MMDetection is not installed, so this config is read as visdet's "
              f"(default_scope='{VISDET}'" + (f"; {len(entries)} scoped names translated: {shown}" if entries else "")
              + (f"; {PLAIN_CHECKPOINTS} added to custom_hooks, so that its checkpoints load with "
                 "weights_only=True in tools/test.py and --resume" if added else "")
              + "); visdet has MMDetection's names for the parts it implements", logger="current",
              level=logging.INFO)
    return True


#: visdet's hook that keeps checkpoints free of pickled objects (mmengine's message hub state is not).
PLAIN_CHECKPOINTS = "PlainCheckpointHook"


def add_plain_checkpoints(cfg: MutableMapping[str, Any]) -> bool:
    """Add visdet's PlainCheckpointHook to ``custom_hooks`` unless it is there; True when added.

    visdet loads checkpoints with ``weights_only=True``; a checkpoint written
    without this hook holds mmengine's ``HistoryBuffer`` objects, so visdet's own
    tools would refuse the checkpoints of an MMDetection config's run. visdet's
    ``default_runtime.py`` lists the hook; MMDetection's knows nothing of it.
    """
    hooks = list(cfg.get("custom_hooks") or [])
    if any(isinstance(hook, Mapping) and hook.get("type") == PLAIN_CHECKPOINTS for hook in hooks):
        return False
    cfg["custom_hooks"] = [*hooks, dict(type=PLAIN_CHECKPOINTS)]
    return True


def check_scope(cfg: Mapping[str, Any]) -> None:
    """Refuse an MMDetection-scoped config that was not translated while MMDetection is not installed."""
    if not uses_mmdet_scope(cfg) or mmdet_installed():
        return
    where = "default_scope" if cfg.get("default_scope") == MMDET else next(_scoped_entries(cfg))[2]
    raise ConfigError(
        f"names MMDetection's registry scope '{MMDET}', and MMDetection is not installed (mmengine would then "
        f"build from its own registries and fail with a KeyError); set default_scope='{VISDET}' (and drop "
        f"'{MMDET}.' prefixes), or load the config with visdet.engine.launch.load_config / tools/train.py, which "
        "translate it", where)


# --- every type the config names, against visdet's registries -------------------------------------------------

def _registries() -> dict[str, tuple[Registry, ...]]:
    import visdet.registry as r

    return {"model": (r.MODELS, r.TASK_UTILS), "initializer": (r.WEIGHT_INITIALIZERS,),
            "transform": (r.TRANSFORMS,), "dataset": (r.DATASETS,), "sampler": (r.DATA_SAMPLERS,),
            "function": (r.FUNCTIONS,), "hook": (r.HOOKS,), "parameter scheduler": (r.PARAM_SCHEDULERS,),
            "metric": (r.METRICS, r.EVALUATOR), "visualizer": (r.VISUALIZERS,), "vis backend": (r.VISBACKENDS,),
            "loop": (r.LOOPS,), "model wrapper": (r.MODEL_WRAPPERS,)}


def _typed(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, dict) of ``node`` itself, or of each item when it is a list (or dict of named items)."""
    if isinstance(node, Mapping) and "type" in node:
        yield path, node
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _typed(item, f"{path}[{i}]")


def _model_parts(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str, Any]]:
    yield "model", path, node
    for key, value in node.items():
        if key in HAND_READ or key in ("type", "_scope_"):
            continue
        where = f"{path}.{key}"
        if key == "init_cfg":
            yield from (("initializer", p, v) for p, v in _typed(value, where))
        elif isinstance(value, Mapping):
            if "type" in value:
                yield from _model_parts(value, where)
            else:  # train_cfg / test_cfg / rpn ...: plain dicts that hold typed parts
                for p, v in _untyped_children(value, where):
                    yield from _model_parts(v, p)
        elif isinstance(value, list):
            for p, v in _typed(value, where):
                yield from _model_parts(v, p)


def _untyped_children(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if key in HAND_READ or not isinstance(value, Mapping):
            continue
        if "type" in value:
            yield f"{path}.{key}", value
        else:
            yield from _untyped_children(value, f"{path}.{key}")


def _pipeline(pipeline: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    for p, transform in _typed(pipeline, path):
        yield "transform", p, transform
        if "transforms" in transform:  # RandomChoice / RandomApply / Compose: a list, or a list of lists
            yield from _pipeline(transform["transforms"], f"{p}.transforms")


def _dataset(dataset: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    if not (isinstance(dataset, Mapping) and "type" in dataset):
        return
    yield "dataset", path, dataset
    yield from _pipeline(dataset.get("pipeline", []), f"{path}.pipeline")
    yield from _dataset(dataset.get("dataset"), f"{path}.dataset")
    for p, inner in _typed(dataset.get("datasets", []), f"{path}.datasets"):
        yield from _dataset(inner, p)


def typed_components(cfg: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(what, config path, dict) of every registry-built component the Runner builds (the optimizer aside)."""
    if isinstance(cfg.get("model"), Mapping) and "type" in cfg["model"]:
        yield from _model_parts(cfg["model"], "model")
    for loader_key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(loader_key)
        if not isinstance(loader, Mapping):
            continue
        yield from _dataset(loader.get("dataset"), f"{loader_key}.dataset")
        for name, what in (("sampler", "sampler"), ("batch_sampler", "sampler"), ("collate_fn", "function")):
            yield from ((what, p, v) for p, v in _typed(loader.get(name), f"{loader_key}.{name}"))
    hooks = cfg.get("default_hooks")
    for name, hook in (hooks.items() if isinstance(hooks, Mapping) else []):
        yield from (("hook", p, v) for p, v in _typed(hook, f"default_hooks.{name}"))
    yield from (("hook", p, v) for p, v in _typed(cfg.get("custom_hooks"), "custom_hooks"))
    yield from (("parameter scheduler", p, v) for p, v in _typed(cfg.get("param_scheduler"), "param_scheduler"))
    for key in ("val_evaluator", "test_evaluator"):
        yield from (("metric", p, v) for p, v in _typed(cfg.get(key), key))
    visualizer = cfg.get("visualizer")
    yield from (("visualizer", p, v) for p, v in _typed(visualizer, "visualizer"))
    if isinstance(visualizer, Mapping):
        yield from (("vis backend", p, v) for p, v in _typed(visualizer.get("vis_backends"), "visualizer.vis_backends"))
    for key in ("train_cfg", "val_cfg", "test_cfg"):
        yield from (("loop", p, v) for p, v in _typed(cfg.get(key), key))
    yield from (("model wrapper", p, v) for p, v in _typed(cfg.get("model_wrapper_cfg"), "model_wrapper_cfg"))


def _own_names(registry: Registry) -> list[str]:
    registry.import_from_location()
    return sorted(registry.module_dict)


def _instead(name: str, what: str, registries: tuple[Registry, ...]) -> str:
    from visdet.registry import registered_names

    if name in INSTEAD:
        return f"use {INSTEAD[name]}"
    close = suggestion_text(name, [n for r in registries for n in registered_names(r)])
    own = [n for r in registries for n in _own_names(r)]
    inherited = any(r.parent is not None and r.parent.module_dict for r in registries)
    listed = (f"visdet's {what}s: {', '.join(own)}" if own else f"visdet has no {what}s of its own") + (
        ", and mmengine's" if inherited else "")
    return f"{close.lstrip('; ')} {listed}" if close else listed


def _in_scope(registries: tuple[Registry, ...], scope: Any) -> tuple[Registry, ...]:
    """``registries`` plus, for a downstream project's scope (``default_scope``/``_scope_``), its registries."""
    if not isinstance(scope, str) or scope == VISDET:
        return registries
    found = (r._get_root_registry()._search_child(scope) for r in registries)
    return registries + tuple(r for r in found if r is not None)


def missing_types(cfg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(config path of the type, name, what visdet has instead) for each type no registry in scope resolves.

    visdet's registries (and mmengine's, their parents) are searched, and those of
    the config's ``default_scope`` or a component's ``_scope_`` when a downstream
    project registered its own, as mmengine's builders would.
    """
    tables = _registries()
    missing = []
    for what, path, component in typed_components(cfg):
        name = component.get("type")
        if not isinstance(name, str):
            continue
        scoped = _in_scope(_in_scope(tables[what], cfg.get("default_scope")), component.get("_scope_"))
        if any(r.get(name) is not None for r in scoped):
            continue
        missing.append((f"{path}.type", name, _instead(name, what, tables[what])))
    return missing


def check_known_types(cfg: Mapping[str, Any]) -> None:
    """Name every type visdet lacks in one message (one alone is left to the section checks' did-you-mean).

    A config still in MMDetection's scope here is MMDetection's (it is installed, see
    :func:`check_scope`): its types are for MMDetection's registries, not visdet's.
    """
    if uses_mmdet_scope(cfg):
        return
    missing = missing_types(cfg)
    if len(missing) < 2:
        return
    lines = "\n".join(f"  {path}: '{name}' ({instead})" for path, name, instead in missing)
    raise ConfigError(f"{len(missing)} types in this config are not in visdet (an MMDetection config may use "
                      f"components visdet does not implement); each needs one visdet has:\n{lines}")
