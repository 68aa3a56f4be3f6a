"""visdet's ``FSDPStrategy``: mmengine 0.10.7's, fixed for CPU machines and for visdet's param groups.

What mmengine's ``FSDPStrategy`` gets wrong, and what this subclass does:

* **CPU.** It wraps with ``device_id=int(LOCAL_RANK)``, a CUDA index, and joins
  the process group through mmengine's ``init_dist`` (``torch.cuda.set_device``).
  torch 2.14's FSDP runs on CPU with gloo when given ``device_id=torch.device('cpu')``
  (without it FSDP refuses: "FSDP needs a non-CPU accelerator device"), so
  that is passed when there is no CUDA, and the group is made with gloo.
* **Shape rules see flat shards.** mmengine wraps first and builds the
  optimizer on the wrapped model. Even with ``use_orig_params=True`` (names
  kept) each parameter is then a 1-D view of this process's shard, often
  empty, so visdet's shape rules (``flat_decay_mult`` for 1-D parameters)
  would hit every conv and linear weight. Here visdet's constructor builds the
  optimizer on the unwrapped model (real shapes, visdet's ``OPTIMIZERS``
  registry, ``paramwise_cfg``), and mmengine's own path for a pre-built
  wrapper re-creates it on the sharded parameters by name, keeping every
  group's settings.
* **Re-creating the optimizer.** mmengine re-creates a pre-built optimizer with
  ``cls(params, **optimizer.defaults)``; torch 2.14's AdamW keeps
  ``decoupled_weight_decay`` in its defaults but refuses it as an argument, so
  only the defaults the class's ``__init__`` takes are passed (the groups keep
  every option).
* **Resume.** ``load_optim_state_dict`` calls
  ``FSDP.optim_state_dict_to_load(state_dict, model, optimizer)``, the argument
  order of torch < 2.1; torch 2.14 takes ``(model, optim, optim_state_dict)``
  and fails with "unhashable type: 'dict'". Keywords are passed here.
* **Gradient clipping on a shard.** visdet's ``OptimWrapper`` clips with
  ``torch.nn.utils.clip_grad_norm_``, which under FSDP sees only this
  process's shard; FSDP's ``clip_grad_norm_`` computes the norm over all
  shards, so the wrapper's clip function is pointed at it.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from mmengine._strategy.base import BaseStrategy
from mmengine._strategy.fsdp import FSDPStrategy as MMEngineFSDPStrategy
from mmengine.optim import BaseOptimWrapper
from torch import nn

from visdet.registry import STRATEGIES

from visdet.engine.strategies.names import FSDP, FSDP_WRAPPER
from visdet.engine.strategies.process_group import set_single_process_env


def _ensure_process_group() -> None:
    """A one-process gloo/nccl group when nothing launched several (FSDP always needs a group)."""
    if dist.is_initialized():
        return
    set_single_process_env()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


@STRATEGIES.register_module(name=FSDP, force=True)  # force: survives re-import
class FSDPStrategy(MMEngineFSDPStrategy):
    """mmengine's FSDPStrategy that runs on CPU and keeps visdet's parameter-group rules."""

    def _setup_distributed(self, launcher: str = "pytorch", backend: str = "nccl", **kwargs: Any) -> None:
        if torch.cuda.is_available():
            super()._setup_distributed(launcher, backend, **kwargs)
        elif not dist.is_initialized():
            dist.init_process_group("gloo")  # torchrun's env vars; mmengine's init_dist needs CUDA

    def _wrap_model(self, model: nn.Module) -> Any:
        if not torch.cuda.is_available():
            wrapper = dict(self.model_wrapper or dict(type=FSDP_WRAPPER))
            wrapper.setdefault("device_id", torch.device("cpu"))  # not LOCAL_RANK, a CUDA index
            self.model_wrapper = wrapper
        return super()._wrap_model(model)

    def prepare(self, model: nn.Module | dict, *, optim_wrapper: Any = None, param_scheduler: Any = None,
                compile: dict | bool = False, dispatch_kwargs: dict | None = None) -> Any:
        if self._prepared:
            return self._prepared_components()
        _ensure_process_group()
        if isinstance(optim_wrapper, Mapping):
            if dispatch_kwargs is not None:
                self.dispatch_kwargs.update(dispatch_kwargs)
            model = self.build_model(model)
            # On the unwrapped model: visdet's constructor sees real shapes; mmengine re-creates it on the shards.
            optim_wrapper = BaseStrategy.build_optim_wrapper(self, dict(optim_wrapper), model)
        prepared = super().prepare(model, optim_wrapper=optim_wrapper, param_scheduler=param_scheduler,
                                   compile=compile, dispatch_kwargs=dispatch_kwargs)
        self._clip_over_all_shards()
        return prepared

    def build_optim_wrapper(self, optim_wrapper: Any, model: nn.Module | None = None) -> Any:
        if not isinstance(optim_wrapper, BaseOptimWrapper) or model is None:
            return super().build_optim_wrapper(optim_wrapper, model)
        optimizer = optim_wrapper.optimizer
        if optimizer.state_dict()["state"]:
            raise RuntimeError("the optimizer handed to FSDPStrategy has already stepped; build it before training")
        sharded = {name.replace("_fsdp_wrapped_module.", ""): p for name, p in model.named_parameters()}
        groups = []
        for group in optimizer.param_groups:
            names = [self.id_to_name[id(p)] for p in group["params"]]
            missing = [n for n in names if n not in sharded]
            if missing:
                raise RuntimeError(f"FSDP did not keep the parameters {missing[:3]}...; set use_orig_params=True")
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": [sharded[n] for n in names]})
        accepted = inspect.signature(type(optimizer).__init__).parameters
        defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k != "differentiable"}
        optim_wrapper.optimizer = type(optimizer)(groups, **defaults)
        return optim_wrapper

    def load_optim_state_dict(self, state_dict: dict) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        to_load = FullyShardedDataParallel.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(to_load)

    def _clip_over_all_shards(self) -> None:
        wrapper = getattr(self, "optim_wrapper", None)
        if wrapper is None or not getattr(wrapper, "clip_grad_kwargs", None):
            return
        if getattr(wrapper, "_clip_type", "norm") != "norm" or not hasattr(self.model, "clip_grad_norm_"):
            return
        fsdp_model = self.model

        def clip_grad_norm_(params: Any, max_norm: float, norm_type: float = 2.0, **_: Any) -> torch.Tensor:
            return fsdp_model.clip_grad_norm_(max_norm, norm_type)

        wrapper.clip_func = clip_grad_norm_
