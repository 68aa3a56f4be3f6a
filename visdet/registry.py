"""Every visdet registry, in one place, as children of mmengine's root registries.

With ``default_scope='visdet'`` in a config, mmengine's builders switch to
these children, and each child imports its ``locations`` on first lookup, so
configs resolve without manual imports. ``OPTIMIZERS`` is filled here, at
import time, from every optimizer source (one module each under
``visdet/engine/optim/catalog/sources/``: torch, bitsandbytes, DeepSpeed,
D-Adaptation, transformers, lion-pytorch, prodigyopt, schedulefree,
torch-optimi, galore-torch, apollo-torch, pytorch-optimizer); the naming
rule is in ``catalog/sources/__init__.py``, the laziness in
``visdet.engine.optim.registry``.

Importing this module twice, or ``importlib.reload``-ing it, returns the same
registry objects: mmengine refuses a second child with the same scope, and a
reload must not lose what users registered.
"""
from __future__ import annotations

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

from visdet.engine.optim.registry import OptimizerRegistry, register_all_optimizers

SCOPE = "visdet"


def registered_names(registry: Registry) -> list[str]:
    """Every name ``registry.get`` resolves: the registry's own, then its parents' (for did-you-mean lists)."""
    registry.import_from_location()
    names: list[str] = []
    node: Registry | None = registry
    while node is not None:
        names.extend(n for n in node.module_dict if n not in names)
        node = node.parent
    return names


def _child(name: str, parent: Registry, locations: list[str], cls: type[Registry] = Registry) -> Registry:
    """The visdet child of ``parent``, created once per process."""
    existing = parent.children.get(SCOPE)
    if isinstance(existing, cls):
        return existing
    if existing is not None:  # left by an older definition of this module
        del parent._children[SCOPE]
    return cls(name, parent=parent, scope=SCOPE, locations=locations)


ENGINE, HOOK_MODULES, DATA, MODEL, OPTIM, OPTIM_BUILDERS, EVAL, VIS = (
    ["visdet.engine"],
    ["visdet.engine.hooks"],
    ["visdet.datasets"],
    ["visdet.models"],
    ["visdet.engine.optim"],
    ["visdet.engine.optim.builders"],
    ["visdet.evaluation"],
    ["visdet.visualization"],
)

# Runner and its parts.
RUNNERS = _child("runner", MMENGINE_RUNNERS, ENGINE)
RUNNER_CONSTRUCTORS = _child("runner constructor", MMENGINE_RUNNER_CONSTRUCTORS, ENGINE)
LOOPS = _child("loop", MMENGINE_LOOPS, ["visdet.engine.loops"])
HOOKS = _child("hook", MMENGINE_HOOKS, HOOK_MODULES)
LOG_PROCESSORS = _child("log processor", MMENGINE_LOG_PROCESSORS, ENGINE)
STRATEGIES = _child("strategy", MMENGINE_STRATEGIES, ["visdet.engine.strategies.registered"])

# Data.
DATASETS = _child("dataset", MMENGINE_DATASETS, DATA)
DATA_SAMPLERS = _child("data sampler", MMENGINE_DATA_SAMPLERS, DATA)
TRANSFORMS = _child("transform", MMENGINE_TRANSFORMS, DATA)
FUNCTIONS = _child("function", MMENGINE_FUNCTIONS, DATA)

# Models.
MODELS = _child("model", MMENGINE_MODELS, MODEL)
MODEL_WRAPPERS = _child("model_wrapper", MMENGINE_MODEL_WRAPPERS, MODEL)
WEIGHT_INITIALIZERS = _child("weight initializer", MMENGINE_WEIGHT_INITIALIZERS, MODEL)
TASK_UTILS = _child("task util", MMENGINE_TASK_UTILS, MODEL)

# Optimization.
OPTIMIZERS: OptimizerRegistry = _child("optimizer", MMENGINE_OPTIMIZERS, OPTIM, OptimizerRegistry)  # type: ignore[assignment]
OPTIM_WRAPPERS = _child("optim_wrapper", MMENGINE_OPTIM_WRAPPERS, OPTIM_BUILDERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    "optimizer wrapper constructor", MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_BUILDERS)
PARAM_SCHEDULERS = _child("parameter scheduler", MMENGINE_PARAM_SCHEDULERS, OPTIM)

# Evaluation and visualisation.
METRICS = _child("metric", MMENGINE_METRICS, EVAL)
EVALUATOR = _child("evaluator", MMENGINE_EVALUATOR, EVAL)
VISUALIZERS = _child("visualizer", MMENGINE_VISUALIZERS, VIS)
VISBACKENDS = _child("vis_backend", MMENGINE_VISBACKENDS, VIS)

register_all_optimizers(OPTIMIZERS)
