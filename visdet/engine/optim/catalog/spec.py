"""The one record of an optimizer: ``OptimizerSpec``, frozen, written by its source.

A record says where the class lives, which package provides it, what it needs
to run, how much optimizer state it keeps and what the engine must do for it
(its capabilities). Records exist for optimizers whose package is not
installed too, so the listing and error messages can say why a name cannot be
used here. What is true in this install (present, import failure) is kept
beside the record by the catalogue, never in it.
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
    # What a training loop must do beyond ``backward(); step()``: visdet's drivers
    # (wrappers/drivers/) do these; DeepSpeed's and FSDP's engines refuse them at check time.
    CLOSURE = "closure"  # step(closure) re-runs forward and backward (SAM, AliG)
    CREATE_GRAPH = "create_graph"  # backward(create_graph=True) for Hessian products
    PARAM_LAYOUT = "param_layout"  # parameter groups laid out its own way (use_muon, LoRA pairs)
    # Built around something other than a parameter list; met when the build passes it.
    BASE_OPTIMIZER = "base_optimizer"  # wraps another optimizer instance
    MODEL = "model"  # takes the model itself
    # A kind of model visdet does not have; never met (the notes say which).
    LORA_ADAPTERS = "lora_adapters"  # LoRA A/B adapter pairs (LoRARite)
    FP16_WEIGHTS = "fp16_weights"  # float16 weights kept with fp32 master copies (SafeFP16Optimizer)
    # A training-loop protocol of its own that visdet's drivers do not follow; never met (the notes say which).
    OWN_LOOP = "own_loop"  # GSAM: set_closure() returning (outputs, loss), a rho_scheduler object


@dataclass(frozen=True)
class OptimizerSpec:
    """What visdet knows about one optimizer, before importing it.

    A source writes the facts of each class it knows (description, state size,
    needs, notes, capabilities); the catalogue fills in the identity (name,
    class, module, source) when it registers the class.

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
        notes: A caveat the listing shows and the build logs (e.g. slow on CPU).
        low_rank: ``'galore'`` or ``'apollo'`` when it projects the parameter
            groups that carry ``rank`` (built from ``optim_wrapper.low_rank``).
        engine_name: The name DeepSpeed's config uses for it when DeepSpeed's
            engine builds it (``'OneBitAdam'``); empty otherwise.
        offload: Steps on ZeRO-Offload's CPU copy of the parameters.
        matrix_only: Takes only 2-D parameters; visdet routes the rest to a
            fallback optimizer (torch's Muon).
        shards_state: Shards another optimizer's state across processes
            (ZeroRedundancyOptimizer).
        required: Keywords a config must set although the signature gives them a
            default, because that default fails over parameter groups (heavyball's
            ``PSGDLRA`` derives ``rank`` from a list of tensors).
        layout: The parameter-group layout visdet's constructor builds for it:
            ``'use_muon'`` (pytorch-optimizer's Muon family: matrices in groups
            flagged ``use_muon=True``, the rest ``use_muon=False``),
            ``'use_muon_shapes'`` (the same, one Muon group per shape); empty
            for a plain list of groups (see ``build/muon_layout.py``).
    """

    name: str = ""
    class_name: str = ""
    module: str = ""
    source: str = ""
    description: str = ""
    devices: tuple[str, ...] = ("cpu", "cuda")
    state_bytes: float | None = None
    state_note: str = ""
    needs: tuple[Need, ...] = ()
    aliases: tuple[str, ...] = field(default=())
    notes: str = ""
    low_rank: str = ""
    engine_name: str = ""
    offload: bool = False
    matrix_only: bool = False
    shards_state: bool = False
    required: tuple[str, ...] = ()
    layout: str = ""

    @property
    def import_path(self) -> str:
        return f"{self.module}.{self.class_name}"

    def state_text(self) -> str:
        """State size for a table: ``'8'``, ``'~2.03'``, ``'sub-linear'``."""
        if self.state_bytes is None:
            return self.state_note or "?"
        value = f"{self.state_bytes:g}"
        return f"{value} ({self.state_note})" if self.state_note else value


def facts(
    description: str = "",
    state_bytes: float | None = None,
    state_note: str = "",
    devices: tuple[str, ...] = ("cpu", "cuda"),
    needs: tuple[Need, ...] = (),
    notes: str = "",
    **more: object,
) -> OptimizerSpec:
    """A source's facts about one class: a spec without its identity (``more``: capabilities, or a
    ``module`` other than the source's first export module), in the order sources write them."""
    return OptimizerSpec(
        description=description, state_bytes=state_bytes, state_note=state_note,
        devices=devices, needs=needs, notes=notes, **more,  # type: ignore[arg-type]
    )
