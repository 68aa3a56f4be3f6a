"""Where a training iteration's time goes, stage by stage, from one torch.profiler trace.

Stages are marked by ``record_function`` ranges opened around module forwards
and around the functions that are not modules (anchor/proposal target
assignment and sampling, proposal NMS, losses, the optimizer step). The
forward time of a stage is the self time of every op inside its range (the
nearest enclosing stage wins). Backward ops run on autograd's thread outside
any range; each is charged to the stage of the forward op that recorded it
(torch.profiler gives both the same ``sequence_nr``), so e.g. the RoIAlign
backward and the box head backward appear on their own lines.
"""
from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.autograd import profiler as autograd_profiler

PREFIX = "stage: "


def _range(name: str):
    return autograd_profiler.record_function(PREFIX + name)


def mark_module(module: nn.Module, name: str) -> None:
    """Open the stage ``name`` around every forward call of ``module``."""
    def pre_hook(mod, args):
        ctx = _range(name)
        ctx.__enter__()
        mod.__dict__.setdefault("_stage_ranges", []).append(ctx)

    def post_hook(mod, args, output):
        mod.__dict__["_stage_ranges"].pop().__exit__(None, None, None)

    module.register_forward_pre_hook(pre_hook)
    module.register_forward_hook(post_hook)


def mark_method(owner: object, attr: str, name: str) -> None:
    """Open the stage ``name`` around ``owner.attr(...)`` (an instance's method or a module's function)."""
    original: Callable = getattr(owner, attr)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        with _range(name):
            return original(*args, **kwargs)

    setattr(owner, attr, wrapped)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    with _range(name):
        yield


def _stage_of(event) -> str | None:
    node = event
    while node is not None:
        if node.name.startswith(PREFIX):
            return node.name[len(PREFIX):]
        node = node.cpu_parent
    return None


_ENGINE = "autograd::engine::evaluate_function"


def _backward_node(event):
    """The autograd engine's event for the backward node ``event`` runs under (its sequence_nr is the forward op's)."""
    node = event
    while node is not None:
        if node.name.startswith(_ENGINE):
            return node
        node = node.cpu_parent
    return None


def breakdown(prof: torch.profiler.profile, iterations: int) -> dict[str, float]:
    """Seconds per iteration of each stage (forward and backward separately) and of everything else."""
    events = list(prof.events())
    seq_stage: dict[int, str] = {}
    for event in events:
        if event.sequence_nr >= 0 and _backward_node(event) is None:
            label = _stage_of(event)
            # Ops that create no autograd node (e.g. under no_grad) record the counter's next value too;
            # the op that does create the node comes last, so the last event with the number wins.
            if label is not None:
                seq_stage[event.sequence_nr] = label
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.name.startswith(PREFIX):
            continue
        node = _backward_node(event)
        if node is not None:
            label = seq_stage.get(node.sequence_nr)
            totals[f"{label} (backward)" if label else "other (backward)"] += event.self_cpu_time_total
            continue
        label = _stage_of(event)
        totals[f"{label} (forward)" if label else "other"] += event.self_cpu_time_total
    return {key: value / 1e6 / iterations for key, value in totals.items()}


#: The ops that do a detector's dense arithmetic on the CPU (oneDNN convolutions, MKL matrix products).
DENSE_KERNELS = frozenset({"aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm", "aten::addmm",
                           "aten::bmm", "aten::baddbmm", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward"})


def dense_kernel_seconds(prof: torch.profiler.profile, iterations: int) -> float:
    """Seconds per iteration spent inside the convolution and matrix-product kernels (their self time)."""
    return sum(e.self_cpu_time_total for e in prof.events() if e.name in DENSE_KERNELS) / 1e6 / iterations
