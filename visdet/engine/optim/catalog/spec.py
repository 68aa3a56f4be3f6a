"""Records that describe each optimizer visdet knows of: data, one per optimizer.

A record says where the class lives, which package provides it, what it needs
to run, and how much optimizer state it keeps. Records exist for optimizers
whose package is not installed too, so the listing and error messages can say
why a name cannot be used here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Need(str, Enum):
    """A condition an optimizer needs before it can take a step."""

    CUDA = "cuda"  # a CUDA device
    DISTRIBUTED = "distributed"  # torch.distributed initialised
    DEEPSPEED_ENGINE = "deepspeed_engine"  # built by deepspeed.initialize()
    CXX_COMPILER = "cxx_compiler"  # JIT-compiles a C++ kernel on first use
    # What a training loop must do beyond ``backward(); step()``: visdet's
    # OptimWrapper does none of these, so such optimizers are refused at build.
    CLOSURE = "closure"  # step(closure) re-runs forward and backward (SAM, AliG)
    CREATE_GRAPH = "create_graph"  # backward(create_graph=True) for Hessian products
    PARAM_LAYOUT = "param_layout"  # parameter groups laid out its own way (use_muon, LoRA pairs)
    # Built around something other than a parameter list; met when the build passes it.
    BASE_OPTIMIZER = "base_optimizer"  # wraps another optimizer instance
    MODEL = "model"  # takes the model itself


@dataclass(frozen=True)
class OptimizerSpec:
    """What visdet knows about one optimizer, before importing it.

    Attributes:
        name: The registry name (what a config's ``type`` says).
        class_name: The class's name in ``module``.
        module: Dotted import path that exports the class.
        source: The providing package as pip knows it (``torch``, ``bitsandbytes``...).
        description: One line for humans.
        devices: Devices it steps on (``'cpu'``, ``'cuda'``).
        state_bytes: Optimizer-state bytes per fp32 parameter; None when it is
            not proportional to the parameter count (see ``state_note``).
        state_note: Qualifies ``state_bytes`` (e.g. "with momentum", "sub-linear").
        needs: Conditions beyond the device (distributed, DeepSpeed engine...).
        aliases: Other names that resolve to this record.
        notes: A caveat the listing shows (e.g. slow on CPU).
    """

    name: str
    class_name: str
    module: str
    source: str
    description: str = ""
    devices: tuple[str, ...] = ("cpu", "cuda")
    state_bytes: float | None = None
    state_note: str = ""
    needs: tuple[Need, ...] = ()
    aliases: tuple[str, ...] = field(default=())
    notes: str = ""

    @property
    def import_path(self) -> str:
        return f"{self.module}.{self.class_name}"

    def state_text(self) -> str:
        """State size for a table: ``'8'``, ``'~2.03'``, ``'sub-linear'``."""
        if self.state_bytes is None:
            return self.state_note or "?"
        value = f"{self.state_bytes:g}"
        return f"{value} ({self.state_note})" if self.state_note else value


@dataclass(frozen=True)
class Meta:
    """Per-name metadata that a source attaches to a discovered class."""

    description: str = ""
    state_bytes: float | None = None
    state_note: str = ""
    devices: tuple[str, ...] = ("cpu", "cuda")
    needs: tuple[Need, ...] = ()
    notes: str = ""
