"""The closure driver: one iteration for optimizers whose ``step(closure)`` re-evaluates the loss on the same batch.

SAM and its family perturb the weights along the gradient and take the
gradient again there; LBFGS, AliG and the ``*ScheduleFreeClosure`` optimizers
call the closure for the loss (and gradient) they step from. mmengine's
``train_step`` gives them no closure, so visdet drives them here:

1. the batch is preprocessed once; a **first pass** (forward, losses,
   backward) at the current weights gives the logged losses and the gradient
   SAM's ``first_step`` reads;
2. ``optimizer.step(closure)``: the closure zeroes the gradients, re-runs the
   forward on the same preprocessed batch, backward, and returns the loss. If
   the optimizer calls it before changing any weight (LBFGS, AliG, WSAM), the
   first pass is its first evaluation and is not run again (single process).

Every pass runs in the wrapper's ``optim_context`` (autocast under
``AmpOptimWrapper``). BatchNorm running statistics are updated by the first
pass only: the closure's passes run with them restored afterwards, so a
re-evaluation at perturbed weights does not count as another batch.

Under DDP the first pass runs in ``model.no_sync()`` when its gradient only
picks SAM's perturbation or is recomputed by the optimizer's own closure call
(each rank perturbs along its own gradient; the weights are restored from the
same values on every rank); every closure pass is all-reduced, since the
update is computed from its gradient; the loss a closure returns is the mean
over ranks, so LBFGS's line search decides the same on every rank.

Each pass is checked for a non-finite loss or gradient (the decision is taken
by all ranks together); a bad pass skips the step with the parameters *and*
the optimizer state as they were before it (SAM has already perturbed the
weights, LBFGS moved them in its line search: both are restored from a copy
taken before ``step``), counted like any other skip. ``clip_grad`` clips every
gradient the update is computed from (each closure pass; the first pass only
on a plain step of ``closure_interval``), never SAM's perturbation gradient,
which SAM normalises to ``rho`` anyway. ``closure_interval=N`` (an
``optim_wrapper`` key) perturbs every N-th step and steps the base optimizer
on the first pass's gradient in between. Gradient accumulation and float16's
``GradScaler`` (whose ``step`` takes no closure) are refused.
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from visdet.engine.optim.catalog.catalogue import spec_for_class
from visdet.engine.optim.catalog.spec import Need
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.wrappers.nonfinite import GRADS, LOSS
from visdet.engine.optim.wrappers.train_step import Forward, forward_losses, preprocess, register_driver, unwrap

WRAPPER_KEY = "optim_wrapper"
#: Attributes under which an optimizer keeps the optimizer it wraps (SAM's base, Lookahead's inner one).
NESTED = ("base_optimizer", "optimizer")


def chain(optimizer: Any) -> list[torch.optim.Optimizer]:
    """``optimizer`` and the optimizers it wraps, outermost first (Lookahead around SAM around SGD)."""
    found: list[torch.optim.Optimizer] = []
    current = optimizer
    while isinstance(current, torch.optim.Optimizer) and all(current is not seen for seen in found):
        found.append(current)
        current = next((getattr(current, a) for a in NESTED
                        if isinstance(getattr(current, a, None), torch.optim.Optimizer)), None)
    return found


def _closure_required(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``step``'s ``closure`` parameter has no default (LBFGS: ``step(self, closure)``)."""
    try:
        parameter = inspect.signature(type(optimizer).step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is inspect.Parameter.empty


def needs_closure(optimizer: Any) -> bool:
    """Whether ``optimizer`` (or one it wraps) steps only with a closure: its catalogue record says so, or its step."""
    for item in chain(optimizer):
        spec = spec_for_class(type(item))
        if (spec is not None and Need.CLOSURE in spec.needs) or _closure_required(item):
            return True
    return False


class NonFinitePass(Exception):
    """A pass inside ``step(closure)`` had a non-finite loss or gradient: the step is abandoned and undone."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Snapshot:
    """Parameters and optimizer state before a step, to put back bit-identically when the step is abandoned.

    The optimizer's own ``state_dict``/``load_state_dict`` carry its state, so
    a wrapper optimizer's nested state (SAM's base optimizer, GSAM's) and
    entries a step adds (SAM's ``old_p``) are covered without knowing them.
    Costs one copy of the parameters and of the state per step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.values = [p.detach().clone() for p in self.params]
        self.state = copy.deepcopy(optimizer.state_dict())

    @torch.no_grad()
    def restore(self) -> None:
        for param, value in zip(self.params, self.values):
            param.copy_(value)
        self.optimizer.load_state_dict(self.state)


@contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Run the block with every training-mode norm layer's running statistics put back afterwards."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.training and module.track_running_stats:
            buffers = (module.running_mean, module.running_var, module.num_batches_tracked)
            saved.append((buffers, [b.clone() if b is not None else None for b in buffers]))
    try:
        yield
    finally:
        with torch.no_grad():
            for buffers, values in saved:
                for buffer, value in zip(buffers, values):
                    if buffer is not None:
                        buffer.copy_(value)


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _refuse_unsupported(wrapper: Any) -> None:
    """Combinations no closure step can honour (also refused at config time by ``config/closure_checks``)."""
    if getattr(wrapper, "_accumulative_counts", 1) > 1:
        raise OptimizerConfigError(
            f"must be 1 for {type(wrapper.optimizer).__name__}: its step(closure) re-evaluates the loss on one "
            "batch, which cannot be accumulated over several; use a larger batch instead",
            f"{WRAPPER_KEY}.accumulative_counts")
    if getattr(wrapper, "loss_scaler", None) is not None:
        raise OptimizerConfigError(
            f"float16 needs a GradScaler, whose step takes no closure, so {type(wrapper.optimizer).__name__} "
            "cannot step under it; use dtype='bfloat16' or float32", f"{WRAPPER_KEY}.dtype")


def _plain_step_now(wrapper: Any) -> bool:
    """With ``closure_interval=N``, whether this iteration is one of the plain base-optimizer steps in between."""
    interval = int(getattr(wrapper, "closure_interval", 1) or 1)
    if interval <= 1:
        return False
    if not isinstance(getattr(wrapper.optimizer, "base_optimizer", None), torch.optim.Optimizer):
        raise OptimizerConfigError(
            f"closure_interval={interval} needs an optimizer that wraps a base optimizer (the SAM family), "
            f"to step in between; {type(wrapper.optimizer).__name__} does not", f"{WRAPPER_KEY}.closure_interval")
    return wrapper._inner_count % interval != 0


class _Pass:
    """One forward/backward of the closure step, with the check of its loss and gradients."""

    def __init__(self, wrapper: Any, model: nn.Module, batch: Any) -> None:
        self.wrapper, self.model, self.batch = wrapper, model, batch

    def run(self, *, sync: bool, clip: bool, freeze_norm: bool) -> tuple[Forward, str | None, torch.Tensor]:
        """Forward and backward; what was non-finite (None: all finite, on every rank) and the mean loss."""
        with ExitStack() as stack:
            if not sync and hasattr(self.model, "no_sync"):
                stack.enter_context(self.model.no_sync())  # DDP: this pass's gradient is not all-reduced
            if freeze_norm:
                stack.enter_context(frozen_norm_stats(unwrap(self.model)))
            self.wrapper.optimizer.zero_grad()
            forward = forward_losses(self.model, self.batch, self.wrapper)
            # loss.backward, not wrapper.backward: that counts an iteration per call (mmengine's _inner_count).
            forward.loss.backward()
        what, loss = self.check(forward.loss, clip)
        return forward, what, loss

    def check(self, loss: torch.Tensor, clip: bool) -> tuple[str | None, torch.Tensor]:
        """Clip if asked; whether the loss or gradients are non-finite on any rank; the loss averaged over ranks."""
        wrapper = self.wrapper
        # mmengine names the logged value grad_norm for norm clipping (visdet's AGC too), grad_value otherwise.
        norm_clip = bool(wrapper.clip_grad_kwargs) and getattr(wrapper, "grad_name", "") == "grad_norm"
        if clip and norm_clip:
            norm = wrapper._clip_grad_norm()  # the total norm: non-finite iff some gradient is
        else:
            norm = wrapper._grad_max_abs()  # before value clipping, which would make inf finite
            if clip and wrapper.clip_grad_kwargs:
                wrapper._clip_grad_norm()
        value = loss.detach().float().reshape(())
        device = value.device
        bad_grads = torch.zeros((), device=device) if norm is None else (~torch.isfinite(norm)).float().to(device)
        packed = torch.stack([(~torch.isfinite(value)).float(), bad_grads, value])
        if _distributed():  # decided together, or the ranks would take different paths through the step
            torch.distributed.all_reduce(packed)
            packed[2] /= torch.distributed.get_world_size()
        values = packed.tolist()  # the pass's one host sync
        if clip and norm_clip and norm is not None:
            wrapper.message_hub.update_scalar(f"train/{wrapper.grad_name}", float(norm))
        what = LOSS if values[0] > 0 else GRADS if values[1] > 0 else None
        return what, packed[2].to(loss.dtype)


def _versions(optimizer: torch.optim.Optimizer) -> list[tuple[int, int, int]]:
    """Each parameter's and gradient's in-place version: unchanged means the first pass still holds."""
    return [(p._version, id(p.grad), -1 if p.grad is None else p.grad._version)
            for group in optimizer.param_groups for p in group["params"]]


def drive_closure(wrapper: Any, model: nn.Module, data: Any) -> dict:
    """One iteration of a closure optimizer on ``data``: first pass, then ``step(closure)``; the log variables."""
    _refuse_unsupported(wrapper)
    optimizer = wrapper.optimizer
    plain = _plain_step_now(wrapper)
    batch = preprocess(model, data)
    step = _Pass(wrapper, model, batch)
    # First pass. Under DDP it is all-reduced only on a plain step, whose update it is; otherwise its
    # gradient only picks SAM's perturbation or is recomputed by the optimizer's own first closure call.
    first, what, first_loss = step.run(sync=plain, clip=plain, freeze_norm=False)
    wrapper._inner_count += 1
    loss_value = float(first_loss)
    if what is not None:
        optimizer.zero_grad()
        wrapper._skip(what, loss_value)
        return first.log_vars
    if plain:
        optimizer.base_optimizer.step()
        optimizer.zero_grad()
        wrapper._applied(loss_value)
        return first.log_vars

    snapshot = Snapshot(optimizer)
    untouched = None if _distributed() else _versions(optimizer)  # under DDP the first gradient is local
    first_checked = [False]

    @torch.enable_grad()  # optimizers call the closure inside their no_grad step()
    def closure() -> torch.Tensor:
        if not first_checked[0]:
            first_checked[0] = True
            if untouched is not None and _versions(optimizer) == untouched:
                # Called before any weight moved: the first pass is this evaluation (clipped now, as the update's).
                again, _ = step.check(first.loss, clip=True)
                if again is not None:
                    raise NonFinitePass(again)
                return first_loss
        # Every closure pass is all-reduced (the update uses its gradient); BN statistics are put back after it.
        _, bad, loss = step.run(sync=True, clip=True, freeze_norm=True)
        if bad is not None:
            raise NonFinitePass(bad)
        return loss

    try:
        optimizer.step(closure)
    except NonFinitePass as failed:
        snapshot.restore()
        optimizer.zero_grad()
        wrapper._skip(failed.what, loss_value)
        return first.log_vars
    optimizer.zero_grad()
    wrapper._applied(loss_value)
    return first.log_vars


def closure_step(optimizer: torch.optim.Optimizer, evaluate: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The driver's order of passes without a model (for tests of optimizers on their own, as the contract's).

    ``evaluate`` zeroes the gradients, computes the loss, back-propagates and
    returns it; it runs once at the current weights, then as the closure.
    """
    loss = torch.enable_grad()(evaluate)()
    optimizer.step(torch.enable_grad()(evaluate))
    return loss


register_driver("closure", needs_closure, drive_closure)
