"""visdet's ``DeepSpeedStrategy``: mmengine 0.10.7's, fixed for DeepSpeed 0.19, CPU machines and visdet's hooks.

What mmengine's ``DeepSpeedStrategy`` gets wrong, and what this subclass does:

* **CPU.** ``_setup_distributed`` goes through mmengine's ``init_dist``, which
  calls ``torch.cuda.set_device``; without CUDA this joins torchrun's group
  through ``deepspeed.init_distributed`` with DeepSpeed's CPU accelerator's
  backend (gloo unless oneCCL's bindings are installed). A run without a
  launcher gets a one-process group (DeepSpeed needs one; ZeRO-Offload on one
  device is a normal use).
* **Hooks never see the checkpoint.** ``save_checkpoint``/``resume``/
  ``load_checkpoint`` ignore the runner's ``callback``, so ``before_save_checkpoint``
  and ``after_load_checkpoint`` hooks never run: visdet's ``PlainCheckpointHook``
  (message hub as plain tensors) and ``RNGStateHook`` (exact resume) are
  skipped and the checkpoint needs arbitrary unpickling. Here the callback gets
  the client state DeepSpeed stores next to the weights.
* **NaN steps in float32.** DeepSpeed applies them; visdet's
  ``DeepSpeedOptimWrapper`` (:mod:`.ds_optim_wrapper`) has the engine skip them
  where it can and stops training after too many; ``_wrap_model`` tells it
  whether this engine can skip.
* **Unsafe, non-atomic files.** DeepSpeed reads its files with
  ``weights_only=False`` and writes them in place; see :mod:`.ds_checkpoint`.
* **The 1-bit optimizers** (OnebitAdam, OnebitLamb, ZeroOneAdam) must be built
  by DeepSpeed's engine, which passes itself to them; mmengine builds every
  optimizer before the engine exists, so they could never run. Here visdet's
  registry checks the type and keywords, visdet's constructor makes the
  parameter groups (``paramwise_cfg``), and the type goes into DeepSpeed's
  ``optimizer`` config section with those groups as ``model_parameters``.

Every other optimizer is built by visdet's constructor from visdet's
``OPTIMIZERS`` registry (through ``build_optim_wrapper`` under
``default_scope='visdet'``) and handed to ``deepspeed.initialize``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from mmengine._strategy.deepspeed import MMDeepSpeedEngineWrapper
from mmengine._strategy.deepspeed import DeepSpeedStrategy as MMEngineDeepSpeedStrategy
from mmengine._strategy.deepspeed import deepspeed
from torch import nn

from visdet.engine.strategies import ds_checkpoint
from visdet.engine.strategies.ds_optim_wrapper import DeepSpeedOptimWrapper, enable_step_skipping
from visdet.engine.strategies.lookup import optimizer_spec
from visdet.engine.strategies.names import DEEPSPEED, StrategyConfigError
from visdet.engine.strategies.process_group import set_single_process_env
from visdet.registry import STRATEGIES


def ensure_process_group(backend: str) -> None:
    """Make a one-process group when nothing launched several (DeepSpeed always needs a group)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    set_single_process_env()
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)


def _backend() -> str:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().communication_backend_name()


def _plain(value: Any) -> Any:
    """``value`` with mmengine ConfigDicts (and other mappings/tuples) turned into dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@STRATEGIES.register_module(name=DEEPSPEED, force=True)  # force: survives re-import
class DeepSpeedStrategy(MMEngineDeepSpeedStrategy):
    """mmengine's DeepSpeedStrategy that runs on CPU, keeps visdet's checkpoint hooks and safe files."""

    def __init__(self, **kwargs: Any) -> None:
        if deepspeed is None:  # mmengine would `assert` here
            raise StrategyConfigError(f"{DEEPSPEED} needs DeepSpeed, which is not installed: "
                                      "pip install 'deepspeed<0.19.7'", "strategy.type")
        self._engine_optimizer: dict[str, Any] | None = None
        self._model_parameters: list[dict[str, Any]] | None = None
        super().__init__(**kwargs)
        # DeepSpeed stores its config in every checkpoint; ConfigDicts there would need unpickling code.
        self.config = _plain(self.config)

    def _setup_distributed(self, launcher: str | None = None, backend: str = "nccl", **kwargs: Any) -> None:
        if torch.cuda.is_available():
            super()._setup_distributed(launcher, backend, **kwargs)
            return
        # mmengine's init_dist would call torch.cuda.set_device; torchrun's env vars are all DeepSpeed needs.
        deepspeed.init_distributed(dist_backend=_backend(), auto_mpi_discovery=False, **kwargs)

    def prepare(self, model: nn.Module | dict, *, optim_wrapper: Any = None, param_scheduler: Any = None,
                compile: dict | bool = False, dispatch_kwargs: dict | None = None) -> Any:
        if not self._prepared:
            ensure_process_group("nccl" if torch.cuda.is_available() else _backend())
            if dispatch_kwargs and "train_micro_batch_size_per_gpu" in dispatch_kwargs:
                self.config.setdefault("train_micro_batch_size_per_gpu",
                                       dispatch_kwargs["train_micro_batch_size_per_gpu"])
        return super().prepare(model, optim_wrapper=optim_wrapper, param_scheduler=param_scheduler,
                               compile=compile, dispatch_kwargs=dispatch_kwargs)

    def build_optim_wrapper(self, optim_wrapper: Any, model: nn.Module | None = None) -> Any:
        optimizer = optim_wrapper.get("optimizer") if isinstance(optim_wrapper, Mapping) else None
        name = optimizer.get("type") if isinstance(optimizer, Mapping) else None
        spec = optimizer_spec(name) if isinstance(name, str) else None
        if spec is not None and spec.engine_name and model is not None:
            return self._plan_engine_optimizer(dict(optim_wrapper), model, spec.engine_name)
        return super().build_optim_wrapper(optim_wrapper, model)

    def _plan_engine_optimizer(self, optim_wrapper: dict[str, Any], model: nn.Module,
                               engine_name: str) -> DeepSpeedOptimWrapper:
        """A 1-bit optimizer: checked by visdet's registry, built later by DeepSpeed's engine as ``engine_name``."""
        from visdet.engine.optim.build.constructor import OptimWrapperConstructor
        from visdet.engine.optim.config.arguments import check_keywords, check_values
        from visdet.utils.signatures import accepted_keywords
        from visdet.registry import OPTIMIZERS

        key = "optim_wrapper.optimizer"
        kwargs = dict(optim_wrapper["optimizer"])
        name = kwargs.pop("type")
        OPTIMIZERS.check_buildable(name, frozenset(kwargs) | {"deepspeed"})  # CUDA, process group
        keywords = accepted_keywords(OPTIMIZERS.get(name))
        check_keywords(kwargs, keywords, name, key)
        check_values(kwargs, keywords, name, key)
        # Parameter groups (paramwise_cfg) depend only on lr and weight decay: plan them with a plain Adam
        # carrying the same two, since the 1-bit class itself cannot be built outside the engine.
        base = {k: kwargs[k] for k in ("lr", "weight_decay") if k in kwargs}
        constructor = OptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type="Adam", **base)),
                                              optim_wrapper.get("paramwise_cfg"))
        # Frozen parameters stay out of the engine, as before the constructor took them in (the 1-bit
        # optimizers' engine flattens what it is given).
        groups = constructor.plan(model).param_plan.groups("main", trainable_only=True)
        self._model_parameters = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in groups]
        self.config["optimizer"] = dict(type=engine_name, params=kwargs)
        wrapper = DeepSpeedOptimWrapper.__new__(DeepSpeedOptimWrapper)
        wrapper._init_counters(optim_wrapper.get("max_nonfinite_steps", 10))
        wrapper._model = None
        wrapper.base_param_settings = None
        wrapper.engine_skips = None
        wrapper.optimizer = None  # set by _wrap_model from the engine
        return wrapper

    def _wrap_model(self, model: nn.Module) -> MMDeepSpeedEngineWrapper:
        if self._model_parameters is not None:  # the engine builds the 1-bit optimizer itself
            engine, self.optim_wrapper.optimizer, *_ = deepspeed.initialize(
                model=model, model_parameters=self._model_parameters, config=self.config)
            wrapper = MMDeepSpeedEngineWrapper(model=engine, inputs_to_half=self._inputs_to_half)
        else:
            wrapper = super()._wrap_model(model)
        ds_checkpoint.install(wrapper.model)
        if isinstance(getattr(self, "optim_wrapper", None), DeepSpeedOptimWrapper):
            self.optim_wrapper.engine_skips = enable_step_skipping(wrapper.model)
        return wrapper

    def save_checkpoint(self, filename: str, *, save_optimizer: bool = True, save_param_scheduler: bool = True,
                        extra_ckpt: dict | None = None, callback: Callable | None = None) -> None:
        extra_ckpt = {} if extra_ckpt is None else extra_ckpt
        if callback is not None:  # mmengine skips it: before_save_checkpoint hooks see DeepSpeed's client state
            callback(extra_ckpt)
        super().save_checkpoint(filename, save_optimizer=save_optimizer, save_param_scheduler=save_param_scheduler,
                                extra_ckpt=extra_ckpt)

    def resume(self, filename: str, *, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location: Any = "default", callback: Callable | None = None) -> dict:
        checkpoint = self._require_folder(filename)
        extra = super().resume(checkpoint, resume_optimizer=resume_optimizer,
                               resume_param_scheduler=resume_param_scheduler)
        if callback is not None:
            callback(extra)
        return extra

    def load_checkpoint(self, filename: str, *, map_location: Any = "cpu", strict: bool = False,
                        revise_keys: list | None = None, callback: Callable | None = None) -> dict:
        extra = super().load_checkpoint(self._require_folder(filename))
        if callback is not None:
            callback(extra)
        return extra

    @staticmethod
    def _require_folder(filename: str) -> str:
        """DeepSpeed checkpoints are folders; name a plain file or a missing path instead of failing inside it."""
        from visdet.errors import CheckpointError

        if not os.path.isdir(filename):
            what = "is a single file (a Runner/DDP/FSDP checkpoint?)" if os.path.isfile(filename) else "does not exist"
            raise CheckpointError(
                f"checkpoint {os.path.abspath(filename)} {what}; {DEEPSPEED} resumes from the folder DeepSpeed "
                "wrote (e.g. work_dir/epoch_1.pth/ holding mp_rank_00_model_states.pt)")
        return filename
