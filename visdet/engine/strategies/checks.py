"""Build-time checks of ``runner_type``/``strategy`` configs, before any model, data or process group.

mmengine's strategies report mistakes late and badly: DeepSpeed missing is an
``assert`` in ``DeepSpeedStrategy.__init__``; an unknown ZeRO stage, a
ZeRO-Offload with an optimizer DeepSpeed cannot offload, or ``clip_grad`` on a
wrapper that has none fail inside ``deepspeed.initialize`` after the model and
data are built; 1-bit Adam on a CPU fails deep in DeepSpeed's communication
code. Every such mistake is one :class:`StrategyConfigError` here, naming the
key, what is wrong and what would be right.
"""
from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from visdet.engine.optim.catalog.spec import Need
from visdet.engine.strategies.lookup import optimizer_spec, strategy_class
from visdet.engine.strategies.names import (DEEPSPEED, DEEPSPEED_WRAPPER, FLEXIBLE_RUNNER, FSDP, FSDP_WRAPPER,
                                            KNOWN_STRATEGIES, StrategyConfigError)
from visdet.utils.suggestions import suggestion_text

#: Why the 1-bit family (the optimizers DeepSpeed's engine builds itself, passing the engine: their
#: records' ``engine_name``) cannot run without CUDA (checked in DeepSpeed 0.19.6's sources).
ONEBIT_CPU_REASON = (
    "its compressed allreduce has no CPU implementation in DeepSpeed: comm_backend_name='nccl' needs cupy and "
    "CUDA, 'mpi' needs mpi4py and cupy, and 'compressed' needs the packbits kernel, which DeepSpeed's CPU "
    "accelerator does not build"
)
ZERO_STAGES = (0, 1, 2, 3)


def uses_flexible_runner(cfg: Mapping[str, Any]) -> bool:
    """Whether the config asks for mmengine's FlexibleRunner (and so for a strategy)."""
    runner_type = cfg.get("runner_type")
    name = runner_type if isinstance(runner_type, str) else getattr(runner_type, "__name__", None)
    return name is not None and name.split(".")[-1] == FLEXIBLE_RUNNER


def strategy_type(cfg: Mapping[str, Any]) -> str | None:
    """The strategy's type name, or None when the config names no strategy."""
    strategy = cfg.get("strategy")
    if strategy is None:
        return None
    obj_type = strategy.get("type") if isinstance(strategy, Mapping) else None
    name = obj_type if isinstance(obj_type, str) else getattr(obj_type, "__name__", None)
    return name.split(".")[-1] if name else None


def check_strategy_config(cfg: Mapping[str, Any]) -> None:
    """Refuse a strategy config that cannot work here; return quietly for one that can.

    Raises:
        StrategyConfigError: the first mistake found, naming its key.
    """
    strategy = cfg.get("strategy")
    if strategy is None:
        return
    if not uses_flexible_runner(cfg):
        raise StrategyConfigError(
            f"only mmengine's FlexibleRunner reads 'strategy' (the Runner ignores it); add "
            f"runner_type='{FLEXIBLE_RUNNER}' next to it", "strategy")
    if not isinstance(strategy, Mapping):
        raise StrategyConfigError(f"must be a dict like dict(type='{DEEPSPEED}', ...), got {strategy!r}", "strategy")
    name = strategy_type(cfg)
    if name is None:
        raise StrategyConfigError(f"has no 'type'; one of {', '.join(KNOWN_STRATEGIES)}", "strategy.type")
    if name not in KNOWN_STRATEGIES:
        raise StrategyConfigError(
            f"unknown strategy '{name}'{suggestion_text(name, KNOWN_STRATEGIES)} Known: {', '.join(KNOWN_STRATEGIES)}",
            "strategy.type")
    _check_no_per_module_optimizers(cfg, name)
    _check_no_create_graph(cfg, name)
    _check_no_model_taking(cfg, name)
    _check_no_closure(cfg, name)
    _check_no_wrapper_optimizer(cfg, name)
    if name == DEEPSPEED:
        _check_deepspeed(cfg, strategy)
    elif name == FSDP:
        _check_fsdp(cfg, strategy)


def _check_no_per_module_optimizers(cfg: Mapping[str, Any], name: str) -> None:
    """Per-module optimizers (``custom_keys[k].optimizer``) run behind visdet's HybridOptimizer, which neither
    FSDP (it re-creates the optimizer by class on flat shards) nor DeepSpeed's engine (one optimizer of its own)
    can take."""
    paramwise = (cfg.get("optim_wrapper") or {}).get("paramwise_cfg")
    custom = paramwise.get("custom_keys") if isinstance(paramwise, Mapping) else None
    for key, rule in (custom.items() if isinstance(custom, Mapping) else ()):
        if isinstance(rule, Mapping) and "optimizer" in rule:
            raise StrategyConfigError(
                f"a per-module optimizer cannot run under {name}, which needs one optimizer of one class; drop this "
                "optimizer (the entry's lr_mult/decay_mult still apply) or train with DDP (tools/dist_train.sh "
                "without a strategy)", f"optim_wrapper.paramwise_cfg.custom_keys[{key!r}].optimizer")


def _nested_specs(cfg: Mapping[str, Any]) -> Iterator[tuple[Any, str]]:
    """(catalogue record, config key) of the optimizer and of each one nested in it (``optimizer=`` or
    ``base_optimizer=``, config/nested_optimizer.py), outermost first; types without a record are passed over."""
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer")
    key = "optim_wrapper.optimizer"
    while isinstance(optimizer, Mapping):
        spec = optimizer_spec(optimizer.get("type") if isinstance(optimizer.get("type"), str) else None)
        if spec is not None:
            yield spec, key
        inner = next((k for k in ("optimizer", "base_optimizer") if k in optimizer), None)
        optimizer, key = (optimizer.get(inner), f"{key}.{inner}") if inner else (None, key)


def _check_no_create_graph(cfg: Mapping[str, Any], name: str) -> None:
    """Second-order optimizers (SophiaH, AdaHessian; nested in a wrapper too) need visdet's OptimWrapper to
    back-propagate with create_graph=True (wrappers/drivers/second_order.py); DeepSpeed's engine runs its own
    backward and FSDP's reduce-scattered gradient shards carry no graph."""
    for spec, key in _nested_specs(cfg):
        if Need.CREATE_GRAPH in spec.needs:
            raise StrategyConfigError(
                f"{spec.name} estimates the Hessian by differentiating the gradients again "
                f"(backward(create_graph=True)), which {name} cannot do: its gradients carry no graph; "
                "train it without a strategy (one process)", f"{key}.type")


def _check_no_closure(cfg: Mapping[str, Any], name: str) -> None:
    """Closure optimizers (SAM family, LBFGS, AliG, *ScheduleFreeClosure; nested in a wrapper too) need visdet's
    OptimWrapper to re-run forward and backward inside step(closure) (wrappers/drivers/closure.py); DeepSpeed's
    engine and FSDP's wrapper step without a closure."""
    for spec, key in _nested_specs(cfg):
        if Need.CLOSURE in spec.needs:
            raise StrategyConfigError(
                f"{spec.name} re-evaluates the loss on the same batch inside step(closure), which {name} cannot "
                "drive: its engine runs one backward and steps without a closure; train it without a strategy "
                "(visdet's OptimWrapper, one process or DDP)", f"{key}.type")


def _check_no_model_taking(cfg: Mapping[str, Any], name: str) -> None:
    """Optimizers built over the model (LOMO, AdaLOMO, Adam-mini; build/model_argument.py) walk its named
    parameters themselves (LOMO hooks each one and updates inside backward): DeepSpeed's engine builds its
    optimizer from parameter groups, and FSDP hands the optimizer flat shards under other names."""
    optimizer_type = _optimizer_type(cfg)
    spec = optimizer_spec(optimizer_type)
    if spec is not None and Need.MODEL in spec.needs:
        raise StrategyConfigError(
            f"'{optimizer_type}' takes the model itself and walks its parameters (by name, or from hooks inside "
            f"backward), which {name} cannot give it; train it without a strategy (one process)",
            "optim_wrapper.optimizer.type")


def _check_no_wrapper_optimizer(cfg: Mapping[str, Any], name: str) -> None:
    """Optimizers that wrap another (Lookahead, PCGrad...; config/nested_optimizer.py) are built by visdet's
    constructor around the inner one: FSDP re-creates the optimizer by class over flat shards, and DeepSpeed's
    engine drives one plain optimizer (PCGrad's per-term backward, Lookahead's slow weights are not its)."""
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer")
    optimizer_type = optimizer.get("type") if isinstance(optimizer, Mapping) else None
    spec = optimizer_spec(optimizer_type if isinstance(optimizer_type, str) else None)
    if spec is not None and Need.BASE_OPTIMIZER in spec.needs:
        raise StrategyConfigError(
            f"{spec.name} wraps another optimizer, which {name} cannot build or drive (it steps one optimizer of "
            "its own); train it without a strategy (visdet's OptimWrapper, one process or DDP)",
            "optim_wrapper.optimizer.type")


def _check_keys(strategy: Mapping[str, Any], cls: type) -> None:
    """Keys the strategy class (and mmengine's BaseStrategy, which takes its **kwargs) accepts."""
    from mmengine._strategy import BaseStrategy

    accepted: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not issubclass(klass, BaseStrategy):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        accepted |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"self"}
    for key in strategy:
        if key != "type" and key not in accepted:
            raise StrategyConfigError(
                f"{cls.__name__} has no argument '{key}'{suggestion_text(key, accepted)} "
                f"Valid: {', '.join(sorted(accepted))}", f"strategy.{key}")


def _optimizer_type(cfg: Mapping[str, Any]) -> str | None:
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer")
    obj_type = optimizer.get("type") if isinstance(optimizer, Mapping) else None
    return obj_type if isinstance(obj_type, str) else getattr(obj_type, "__name__", None)


def _check_deepspeed(cfg: Mapping[str, Any], strategy: Mapping[str, Any]) -> None:
    if importlib.util.find_spec("deepspeed") is None:
        raise StrategyConfigError(
            f"{DEEPSPEED} needs DeepSpeed, which is not installed: pip install 'deepspeed<0.19.7' "
            "(or pip install -e '.[all]')", "strategy.type")
    _check_keys(strategy, strategy_class(DEEPSPEED))
    if strategy.get("config") is not None:
        raise StrategyConfigError(
            "visdet takes DeepSpeed's settings as strategy keys (zero_optimization=..., gradient_clipping=..., "
            "bf16=...), so that they are checked before training; move them out of 'config'", "strategy.config")
    zero = strategy.get("zero_optimization") or {}
    if not isinstance(zero, Mapping):
        raise StrategyConfigError(f"must be a dict like dict(stage=2), got {zero!r}", "strategy.zero_optimization")
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or stage not in ZERO_STAGES:
        raise StrategyConfigError(
            f"unknown ZeRO stage {stage!r}; DeepSpeed has stages 0 (off), 1 (optimizer states partitioned), "
            "2 (+ gradients) and 3 (+ parameters)", "strategy.zero_optimization.stage")
    _validate_with_deepspeed(zero)
    optim_wrapper = cfg.get("optim_wrapper") or {}
    wrapper_type = optim_wrapper.get("type", "OptimWrapper")
    wrapper_name = wrapper_type if isinstance(wrapper_type, str) else getattr(wrapper_type, "__name__", "")
    if wrapper_name.split(".")[-1] != DEEPSPEED_WRAPPER:
        raise StrategyConfigError(
            f"{DEEPSPEED} needs type='{DEEPSPEED_WRAPPER}' (DeepSpeed's engine does backward, gradient "
            f"clipping and the step itself), got '{wrapper_name}'", "optim_wrapper.type")
    if optim_wrapper.get("clip_grad") is not None:
        raise StrategyConfigError(
            "DeepSpeed clips gradients itself; remove clip_grad and set strategy.gradient_clipping=<max norm> "
            "(e.g. gradient_clipping=10.0 for clip_grad=dict(max_norm=10.0))", "optim_wrapper.clip_grad")
    optimizer = _optimizer_type(cfg)
    spec = optimizer_spec(optimizer)
    if spec is not None and spec.layout:  # build/muon_layout.py
        raise StrategyConfigError(
            f"'{optimizer}' cannot run under DeepSpeed: its engine hands the optimizer flat fp32 copies of the "
            "parameter groups (ZeRO partitions, its fp16/bf16 optimizers), so the use_muon matrices lose their "
            "shapes; use DDP (tools/dist_train.sh without a strategy)", "optim_wrapper.optimizer.type")
    offload = zero.get("offload_optimizer") or {}
    offload_device = offload.get("device", "none") if isinstance(offload, Mapping) else offload
    if offload_device not in (None, "none") and not (spec is not None and spec.offload) \
            and zero.get("zero_force_ds_cpu_optimizer", True):
        raise StrategyConfigError(
            f"ZeRO-Offload (zero_optimization.offload_optimizer.device='{offload_device}') runs the step on the "
            f"CPU with DeepSpeedCPUAdam; got optimizer type '{optimizer}'. Use "
            "optimizer=dict(type='DeepSpeedCPUAdam', lr=..., adamw_mode=True) or remove offload_optimizer",
            "optim_wrapper.optimizer.type")
    if offload_device not in (None, "none") and stage not in (1, 2, 3):
        raise StrategyConfigError(
            f"offload_optimizer needs ZeRO stage 1, 2 or 3, got stage {stage}", "strategy.zero_optimization.stage")
    if spec is not None and spec.engine_name:
        _check_engine_optimizer(optimizer, stage)


def _validate_with_deepspeed(zero: Mapping[str, Any]) -> None:
    """DeepSpeed's own pydantic model of ``zero_optimization``: unknown keys and bad values, now."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    try:
        DeepSpeedZeroConfig(**dict(zero))
    except Exception as error:  # pydantic.ValidationError; DeepSpeed's model forbids extra keys
        detail = " ".join(str(error).split())
        raise StrategyConfigError(f"DeepSpeed refuses it: {detail}", "strategy.zero_optimization") from None


def _check_engine_optimizer(optimizer: str, stage: int) -> None:
    """1-bit optimizers: built by DeepSpeed's engine, only with CUDA, only without ZeRO."""
    key = "optim_wrapper.optimizer.type"
    if not torch.cuda.is_available():
        raise StrategyConfigError(f"'{optimizer}' cannot run without a CUDA device: {ONEBIT_CPU_REASON}", key)
    if stage != 0:
        raise StrategyConfigError(
            f"DeepSpeed runs '{optimizer}' only without ZeRO (its compressed allreduce replaces ZeRO's "
            f"gradient reduction); set strategy.zero_optimization.stage=0, got {stage}",
            "strategy.zero_optimization.stage")


def _check_fsdp(cfg: Mapping[str, Any], strategy: Mapping[str, Any]) -> None:
    _check_keys(strategy, strategy_class(FSDP))
    state_dict_cfg = strategy.get("state_dict_cfg", "local")
    if state_dict_cfg != "full":
        raise StrategyConfigError(
            f"visdet needs state_dict_cfg='full' (got {state_dict_cfg!r}): rank 0 then writes one ordinary "
            "checkpoint of plain tensors that loads with torch.load(weights_only=True) and with tools/test.py; "
            "'local' writes FSDP's sharded tensor objects, one file per process", "strategy.state_dict_cfg")
    wrapper = strategy.get("model_wrapper") or {}
    if not wrapper.get("use_orig_params", False):
        raise StrategyConfigError(
            f"visdet needs model_wrapper=dict(type='{FSDP_WRAPPER}', use_orig_params=True): the "
            "optimizer is built on the unwrapped model and moved onto FSDP's shards by parameter name, which "
            "only use_orig_params=True keeps", "strategy.model_wrapper.use_orig_params")
    clip_grad = (cfg.get("optim_wrapper") or {}).get("clip_grad")
    if isinstance(clip_grad, Mapping) and clip_grad.get("type") == "agc":
        # Each rank holds flat 1-D shards: a unit's (row's) norms would be taken over pieces of rows.
        raise StrategyConfigError(
            "adaptive gradient clipping (type='agc') cannot run under FSDP: each process holds flat 1-D shards "
            "of the parameters, so the per-unit norms it clips by would be wrong; use norm clipping, "
            "clip_grad=dict(max_norm=10.0), or DDP (tools/dist_train.sh without a strategy)",
            "optim_wrapper.clip_grad.type")
    wrapper_type = (cfg.get("optim_wrapper") or {}).get("type", "")
    if isinstance(wrapper_type, str) and wrapper_type.split(".")[-1] == "InBackwardOptimWrapper":
        # Its hooks would step each local gradient before FSDP's reduce-scatter, on unsharded parameters.
        raise StrategyConfigError(
            "InBackwardOptimWrapper cannot run under FSDP: it steps each parameter from a hook as its local "
            "gradient is ready, before FSDP has reduced and sharded it; use type='OptimWrapper'",
            "optim_wrapper.type")
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer")
    if isinstance(optimizer, Mapping):
        name = _optimizer_type(cfg) or ""
        spec = optimizer_spec(name)
        if "fallback" in optimizer or (spec is not None and (spec.matrix_only or spec.shards_state or spec.layout)):
            raise StrategyConfigError(
                f"'{name}' cannot run under FSDP: FSDP hands the optimizer flat 1-D shards of the parameters, so "
                "a split by shape (Muon and its fallback) or a second sharding (ZeroRedundancyOptimizer) has "
                "nothing to work on; use e.g. type='AdamW', or DDP (tools/dist_train.sh without a strategy)",
                "optim_wrapper.optimizer.type")
