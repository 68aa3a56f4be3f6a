"""One optimizer per parameter behind one ``torch.optim.Optimizer`` façade, for stepping inside backward.

:class:`~visdet.engine.optim.wrappers.in_backward.InBackwardOptimWrapper` steps
each parameter from its ``post_accumulate_grad`` hook (PyTorch's recipe "How to
save memory by fusing the optimizer step into the backward pass"), so each
parameter needs an optimizer of its own. mmengine's parameter schedulers,
logging and checkpoints, though, talk to *one* optimizer's ``param_groups``.
:class:`PerParameterOptimizer` is that one optimizer: its ``param_groups`` are
the constructor's merged groups (lr_mult, decay_mult and custom_keys already
applied), which schedulers change; before a parameter steps, its own
optimizer's group takes the current values of its façade group
(:meth:`PerParameterOptimizer.step_parameter`). Its ``state`` reads through to
the per-parameter optimizers, and ``state_dict()`` is torch's format (state by
parameter index, the façade's groups) plus each per-parameter optimizer's own
group, where some optimizers keep counters (pytorch-optimizer's ``group['step']``),
so a resume is exact.

Nothing in torch or mmengine does this: torch's tutorial keeps a plain dict of
optimizers and leaves schedulers and checkpoints out.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.signatures import accepted_keywords

OPTIMIZER_KEY = "optim_wrapper.optimizer"
#: The key of this façade's state dict that holds each per-parameter optimizer's own group (by parameter index).
PER_PARAMETER_GROUPS = "per_parameter_groups"


class _ReadThroughState(Mapping):
    """``optimizer.state`` of the façade: parameter -> the state its own optimizer keeps (read-only view)."""

    def __init__(self, owner: PerParameterOptimizer) -> None:
        self._owner = owner

    def __getitem__(self, param: torch.Tensor) -> dict:
        inner = self._owner.inner.get(param)
        if inner is None or param not in inner.state:
            raise KeyError(param)
        return inner.state[param]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (p for p, inner in self._owner.inner.items() if inner.state.get(p))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class PerParameterOptimizer(torch.optim.Optimizer):
    """The groups of ``template`` as one optimizer; one ``type(template)`` optimizer per parameter steps it.

    Args:
        template: The optimizer the constructor built (its groups and
            defaults are taken; it never steps and holds no state).

    Raises:
        OptimizerConfigError: when ``type(template)`` cannot be built over a
            single parameter with its group's settings (an optimizer made of
            several, like Muon's hybrid or ZeroRedundancyOptimizer).
    """

    def __init__(self, template: torch.optim.Optimizer) -> None:
        groups = [{k: v for k, v in group.items()} for group in template.param_groups]
        super().__init__(groups, dict(template.defaults))
        self.template_name = type(template).__name__
        self.inner: dict[torch.Tensor, torch.optim.Optimizer] = {}
        self.group_of: dict[torch.Tensor, dict[str, Any]] = {}
        cls = type(template)
        accepted = accepted_keywords(cls)
        kwargs = {k: v for k, v in template.defaults.items() if k in accepted.names}
        for group in self.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for param in group["params"]:
                try:
                    inner = cls([{**settings, "params": [param]}], **kwargs)
                except (TypeError, ValueError, RuntimeError, AssertionError, KeyError, AttributeError) as exc:
                    raise OptimizerConfigError(
                        f"InBackwardOptimWrapper steps one parameter at a time with its own {cls.__name__}, "
                        f"which cannot be built over one parameter ({exc}); use a single optimizer type "
                        "such as AdamW, or type='OptimWrapper'", OPTIMIZER_KEY) from exc
                if [p for g in inner.param_groups for p in g["params"]] != [param]:
                    raise OptimizerConfigError(
                        f"{cls.__name__} built over one parameter does not hold exactly that parameter, so it "
                        "cannot be stepped per parameter; use type='OptimWrapper'", OPTIMIZER_KEY)
                self.inner[param] = inner
                self.group_of[param] = group
        self.state = _ReadThroughState(self)  # type: ignore[assignment]

    def step_parameter(self, param: torch.Tensor) -> None:
        """Step ``param`` (its ``grad`` set) with its own optimizer, under its façade group's current settings."""
        inner = self.inner[param]
        own = inner.param_groups[0]
        for key, value in self.group_of[param].items():
            if key != "params":
                own[key] = value
        inner.step()

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """Step every parameter that has a gradient (what backward's hooks do one by one; used off that path)."""
        if closure is not None:
            raise TypeError("InBackwardOptimWrapper's optimizer takes no closure: it steps inside backward")
        for param in self.inner:
            if param.grad is not None:
                self.step_parameter(param)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop gradients (after an in-backward step there are none: the hooks free each one)."""
        for param in self.inner:
            if param.grad is not None:
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    def _index(self) -> dict[torch.Tensor, int]:
        params = [p for group in self.param_groups for p in group["params"]]
        return {p: i for i, p in enumerate(params)}

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """torch's format over the façade's groups, plus each per-parameter optimizer's own group."""
        index = self._index()
        state: dict[int, Any] = {}
        own_groups: dict[int, Any] = {}
        for param, inner in self.inner.items():
            inner_sd = inner.state_dict()
            if 0 in inner_sd["state"]:
                state[index[param]] = inner_sd["state"][0]
            own_groups[index[param]] = {k: v for k, v in inner_sd["param_groups"][0].items() if k != "params"}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[p] for p in g["params"]]}
                  for g in self.param_groups]
        return {"state": state, "param_groups": groups, PER_PARAMETER_GROUPS: own_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore the façade's groups (scheduled lr, ...) and every per-parameter optimizer's state and group."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(saved["params"]) != len(group["params"]) for saved, group in zip(groups, self.param_groups)):
            raise ValueError("the checkpoint's optimizer groups do not match this model's (another model or "
                             "paramwise_cfg?)")
        for saved, group in zip(groups, self.param_groups):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        own_groups = state_dict.get(PER_PARAMETER_GROUPS, {})
        index = self._index()
        for param, inner in self.inner.items():
            i = index[param]
            own = own_groups.get(i, {k: v for k, v in self.group_of[param].items() if k != "params"})
            saved_state = state_dict["state"].get(i)
            inner.load_state_dict({"state": {} if saved_state is None else {0: saved_state},
                                   "param_groups": [{**own, "params": [0]}]})
