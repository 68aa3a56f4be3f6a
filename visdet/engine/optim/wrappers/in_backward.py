"""``InBackwardOptimWrapper``: each parameter steps inside the backward pass and its gradient is freed at once.

PyTorch's recipe "How to save memory by fusing the optimizer step into the
backward pass": a ``register_post_accumulate_grad_hook`` on every parameter
steps that parameter's own optimizer as soon as its gradient is complete and
sets ``grad`` to ``None``, so the whole model's gradients never exist at the
same time (the peak saving is up to the size of the gradients; see
``benchmarks/in_backward_memory.py``). Any optimizer that can be built over one
parameter works: ``optim_wrapper=dict(type='InBackwardOptimWrapper',
optimizer=dict(type='AdamW', lr=2e-4))``. The per-parameter optimizers sit
behind one façade optimizer
(:class:`~visdet.engine.optim.wrappers.in_backward_optimizer.PerParameterOptimizer`),
so paramwise rules, mmengine's parameter schedulers, ``get_lr()`` and
checkpoints (exact resume) work as with the plain wrapper.

What it cannot keep, and refuses where the config is checked (each naming its key):

* ``clip_grad``: clipping by the whole model's norm needs every gradient,
  and the first ones have already been applied when the last is known;
* ``accumulative_counts > 1``: accumulating needs the gradients kept;
* several processes (DDP): a hook sees the local gradient before DDP's
  buckets are all-reduced, so the replicas would drift apart (refused when
  built; DeepSpeed and FSDP are refused by ``strategies/checks.py``);
* optimizers that need their own iteration (a closure, a loss list,
  ``create_graph``): they have a driver in ``wrappers/drivers``.

The non-finite guard: a non-finite loss is found *before* backward, and the
iteration is skipped with parameters and state bit-identical. A non-finite
gradient is found in its parameter's hook, before that parameter steps: it and
every parameter after it in this backward are not stepped, but the parameters
whose hooks ran before it have already stepped (keeping a copy to roll them
back would cost more memory than the gradients this wrapper saves); the skip
is counted and logged saying exactly that. AMP is not composed with it (it is
a wrapper type of its own, as ``AmpOptimWrapper`` is): float16's loss scaler
must unscale and check all gradients before any step.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mmengine.logging import MMLogger, print_log

from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.in_backward_optimizer import OPTIMIZER_KEY, PerParameterOptimizer
from visdet.engine.optim.wrappers.nonfinite import GRADS, LOSS
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper, _distributed
from visdet.engine.optim.wrappers.train_step import driver_for
from visdet.registry import OPTIM_WRAPPERS

WRAPPER_KEY = "optim_wrapper"


def check_in_backward_options(cfg: Mapping[str, Any]) -> None:
    """Refuse the ``optim_wrapper`` options an in-backward step cannot honour (called by the config checks)."""
    if cfg.get("clip_grad") is not None:
        raise OptimizerConfigError(
            "InBackwardOptimWrapper cannot clip gradients: each parameter steps as soon as its gradient is "
            "ready, before the whole model's norm is known; remove clip_grad or use type='OptimWrapper'",
            f"{WRAPPER_KEY}.clip_grad")
    counts = cfg.get("accumulative_counts", 1)
    if counts != 1:
        raise OptimizerConfigError(
            f"InBackwardOptimWrapper cannot accumulate gradients (accumulative_counts={counts!r}): each gradient "
            "is applied and freed inside backward; use accumulative_counts=1 or type='OptimWrapper'",
            f"{WRAPPER_KEY}.accumulative_counts")


@OPTIM_WRAPPERS.register_module(name="InBackwardOptimWrapper", force=True)  # force: survives re-import
class InBackwardOptimWrapper(OptimWrapper):
    """Step every parameter from its post-accumulate-grad hook with an optimizer of its own.

    Args:
        optimizer: The optimizer the constructor built (its class, groups and
            defaults are used to build one optimizer per parameter).
        accumulative_counts: Must be 1 (accepted so the refusal names it).
        clip_grad: Must be None (accepted so the refusal names it).
        max_nonfinite_steps: As :class:`OptimWrapper`'s.

    Attributes:
        optimizer: The :class:`PerParameterOptimizer` façade.

    Raises:
        OptimizerConfigError: for ``clip_grad``, ``accumulative_counts > 1``,
            several processes, or an optimizer that needs its own iteration
            or cannot be built over one parameter.
    """

    check_options = staticmethod(check_in_backward_options)  # config/wrapper_checks.py runs it at check time

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        accumulative_counts: int = 1,
        clip_grad: dict | None = None,
        max_nonfinite_steps: int = 10,
    ) -> None:
        check_in_backward_options(dict(accumulative_counts=accumulative_counts, clip_grad=clip_grad))
        if _distributed():
            raise OptimizerConfigError(
                "InBackwardOptimWrapper cannot run in several processes: each parameter's hook sees its local "
                "gradient before DDP has averaged it, so the replicas would drift apart; train in one process "
                "or use type='OptimWrapper'", f"{WRAPPER_KEY}.type")
        found = driver_for(optimizer)
        if found is not None:
            raise OptimizerConfigError(
                f"{type(optimizer).__name__} needs its own training iteration ({found[0]}), which cannot run "
                "inside backward; use type='OptimWrapper'", OPTIMIZER_KEY)
        if _needs_closure(optimizer):
            raise OptimizerConfigError(
                f"{type(optimizer).__name__}.step needs a closure (it re-evaluates the loss), which cannot run "
                "inside backward; use type='OptimWrapper'", OPTIMIZER_KEY)
        facade = optimizer if isinstance(optimizer, PerParameterOptimizer) else PerParameterOptimizer(optimizer)
        super().__init__(facade, max_nonfinite_steps=max_nonfinite_steps)
        self._armed = False
        self._stepped = 0  # parameters stepped in the current backward
        self._bad_param: str | None = None  # the parameter whose gradient was non-finite in this backward
        self._names = {p: f"parameter #{i} {tuple(p.shape)}" for i, p in enumerate(facade.inner)}
        self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in facade.inner]
        print_log(f"InBackwardOptimWrapper: {len(facade.inner)} {facade.template_name} optimizers, one per parameter "
                  f"tensor, with its group's settings ({len(facade.param_groups)} groups), stepped inside backward",
                  logger="current")

    def _hook(self, param: torch.Tensor) -> None:
        if not self._armed or param.grad is None:
            return  # a backward outside update_params/backward (a closure, a probe): leave the gradient
        # The inf-norm is a reduction without temporaries (NaN if any element is NaN); torch.isfinite(grad) would
        # allocate copies of the gradient, adding to the very peak this wrapper lowers.
        if self._bad_param is None and self._guards_nonfinite() and not math.isfinite(
                torch.linalg.vector_norm(param.grad, float("inf"))):
            self._bad_param = self._names[param]
        if self._bad_param is None:
            with torch.no_grad():
                self.optimizer.step_parameter(param)
            self._stepped += 1
        param.grad = None  # freed as soon as it is consumed (or refused)

    @contextlib.contextmanager
    def _stepping(self) -> Iterator[None]:
        self._armed, self._stepped, self._bad_param = True, 0, None
        try:
            yield
        finally:
            self._armed = False

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate ``loss``, each parameter stepping (and its gradient freed) as its hook fires."""
        with self._stepping():
            loss.backward(**kwargs)
        self._inner_count += 1

    def update_params(  # type: ignore[override]
        self, loss: torch.Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None
    ) -> None:
        """Check ``loss``, then back-propagate it, stepping each parameter inside backward.

        A non-finite loss skips the iteration before backward (nothing
        changes); a non-finite gradient stops the stepping at its parameter
        (see the module docstring for what that leaves).
        """
        if step_kwargs:
            raise TypeError("InBackwardOptimWrapper steps inside backward: it takes no step_kwargs")
        value = float(loss.detach().float().sum())  # one host sync per iteration, as the plain wrapper's
        if not math.isfinite(value):
            self._inner_count += 1
            self._skip(LOSS, value)
            return
        self.backward(loss)
        self.step()  # nothing left to step; a scheduler's counter on step() sees the iteration's update
        if self._bad_param is None:
            self._applied(value)
            return
        total = len(self.optimizer.inner)
        if self._stepped:
            print_log(
                f"Non-finite gradient of {self._bad_param}: {self._stepped} of {total} parameters had already "
                "stepped in this backward and keep their update (InBackwardOptimWrapper cannot undo them); "
                "it and the parameters after it were not stepped (counted as a skipped step)",
                logger="current", level=logging.WARNING)
            with _without_unchanged_claim():
                self._skip(GRADS, value)
        else:
            self._skip(GRADS, value)

    def step(self, **kwargs: Any) -> None:
        """Nothing to do: the parameters stepped inside backward (gradients set by other code step here)."""
        if any(p.grad is not None for p in self.optimizer.inner):
            self.optimizer.step()
            self.optimizer.zero_grad()

    def zero_grad(self, **kwargs: Any) -> None:
        """Drop any gradient left (none after an in-backward step)."""
        self.optimizer.zero_grad()


def _needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` requires a ``closure`` (LBFGS-like), read from its signature."""
    try:
        parameter = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is inspect.Parameter.empty


class _DropUnchangedClaim(logging.Filter):
    """Drops the guard's "parameters and optimizer state unchanged" line after a partial step (not true then)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "parameters and optimizer state unchanged" not in record.getMessage()


@contextlib.contextmanager
def _without_unchanged_claim() -> Iterator[None]:
    logger = MMLogger.get_current_instance()
    dropper = _DropUnchangedClaim()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)
