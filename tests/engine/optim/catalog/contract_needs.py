"""The one table of what a catalogued optimizer class needs to be held to the contract (test_contract.py).

Keyed by (package, class name), so torch's Adafactor is not transformers', and
every key must name a catalogued class (``unknown_keys``): a misspelt key would
otherwise silently give its class no needs at all.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from visdet.engine.optim.catalog.sources.heavyball import SOURCE as HEAVYBALL
from visdet.engine.optim.catalog.sources.torchao import SOURCE as TORCHAO

if TYPE_CHECKING:
    from visdet.engine.optim.catalog.catalogue import CatalogEntry

STEPS = 5


@dataclass(frozen=True)
class Needs:
    """What one optimizer strictly needs beyond ``lr``, what it breaks, and why.

    Attributes:
        kwargs: Extra keyword arguments (or an lr that replaces the test's lr).
        matrix_only: Give it only the 2-D parameter.
        closure: Drive it with ``step(closure)``.
        create_graph: Backward with ``create_graph=True`` (Hessian-vector products).
        sparse: Give it sparse gradients.
        atol: Tolerance of the state-dict round trip (0: bit-identical).
        steps: Steps before the loss is checked (more for warm-up phases that do not move).
        partial: Updates only some entries (masks): some parameter must move, not every one.
        still_steps: First steps that make no update (rectification warm-up); the
            contract's ``steps`` must go past them.
        has_lr: False for optimizers without an ``lr`` (a scheduler has nothing to set).
        lr_at_first_step: Check the scheduler on the first step instead of mid-run, for
            optimizers whose later steps depend on lr only through state.
        notes_say: Text the catalogue's notes must contain, so the listing tells a user
            what ``kwargs`` tells the test.
        state_kwargs: Arguments under which the catalogued state size holds (its state note).
        state_unmeasured: Why two steps cannot measure the catalogued state size (skipped).
        breaks: How it breaks the contract here (observed); the test then expects that
            failure and fails as soon as it keeps the contract, so the entry gets removed.
        breaks_state: The same for the state-size check.
        eager: Run it with torch.compile off (``torch.compiler.set_stance('force_eager')``):
            compile-first packages (torchao, heavyball) compile each step per shape, 5-50 s a
            class on 2 CPU cores; their compiled path trains the detector in the family configs.
        nested: For an optimizer that wraps another: the inner optimizer's config under the
            keyword the wrapper takes it by (``{'optimizer': {'type': 'SGD'}}``); the test's lr
            and keywords go into it, ``kwargs`` to the wrapper (built by ``build_nested``).
        why: The reason, for the reader.
    """

    kwargs: dict[str, Any] = field(default_factory=dict)
    matrix_only: bool = False
    closure: bool = False
    create_graph: bool = False
    sparse: bool = False
    atol: float = 0.0
    steps: int = STEPS
    partial: bool = False
    still_steps: int = 0
    has_lr: bool = True
    lr_at_first_step: bool = False
    notes_say: str = ""
    state_kwargs: dict[str, Any] = field(default_factory=dict)
    state_unmeasured: str = ""
    breaks: str = ""
    breaks_state: str = ""
    eager: bool = False
    nested: dict[str, dict[str, Any]] = field(default_factory=dict)
    why: str = ""


_LR_FREE = Needs({"lr": 1.0}, notes_say="lr=1.0",
                 why="learning-rate-free: lr multiplies the estimated step size, 1.0 is the intended value")
_NO_RELATIVE = Needs({"relative_step": False}, notes_say="relative_step=False",
                     why="with relative_step=True (its default) it ignores lr, or refuses one")
_MOMENTUM = Needs({"momentum": 0.9}, why="bitsandbytes' SGD/LARS refuse their own default momentum=0")
_WARMUP_STEPS = Needs(steps=10, why="moves nothing until its warm-up (rectification / gradient queue) is over")
_STATE_MOMENTUM = Needs(state_kwargs={"momentum": 0.9}, why="its state figure is the one with momentum (0 without)")
TORCH, BNB, DS, DADAPT, PYOPT = "torch", "bitsandbytes", "deepspeed", "dadaptation", "pytorch-optimizer"
_PAGED_CPU = ("on CPU, paged AdEMAMix state for a tensor over 1e5 values calls bitsandbytes' "
              "cget_managed_ptr, which the CPU-only build lacks (RuntimeError)")

#: (package, class name) -> needs.
NEEDS: dict[tuple[str, str], Needs] = {
    **{(DADAPT, name): _LR_FREE for name in ("DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan", "DAdaptLion")},
    # pytorch-optimizer's D-Adaptation entries have no notes (yet), so nothing for notes_say to find.
    **{(PYOPT, name): replace(_LR_FREE, notes_say="")
       for name in ("DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan", "DAdaptLion")},
    (PYOPT, "Prodigy"): _LR_FREE,
    ("prodigyopt", "Prodigy"): _LR_FREE,
    ("transformers", "Adafactor"): _NO_RELATIVE,
    (PYOPT, "AdaFactor"): replace(_NO_RELATIVE, notes_say=""),  # its notes do not say so (yet)
    ("galore-torch", "GaLoreAdafactor"): _NO_RELATIVE,
    ("apollo-torch", "GaLoreAdafactor"): _NO_RELATIVE,
    **{(BNB, name): _MOMENTUM
       for name in ("LARS", "LARS32bit", "LARS8bit", "PytorchLARS", "SGD", "SGD32bit", "SGD8bit")},
    (TORCH, "SGD"): _STATE_MOMENTUM,
    ("torch-optimi", "SGD"): _STATE_MOMENTUM,
    (PYOPT, "LARS"): Needs(state_kwargs={"momentum": 0.9}, why="its state figure is the one with momentum"),
    (TORCH, "Muon"): Needs(matrix_only=True,
                           why="takes 2-D parameters only (visdet's constructor routes the rest to a fallback)"),
    (PYOPT, "SpectralSphere"): Needs(matrix_only=True,
                                     why="takes 2-D parameters only (the constructor routes the rest to a fallback)"),
    ("torch-optimi", "StableAdamW"): Needs({"triton": False}, notes_say="triton=False",
                                           why="optimi picks its Triton kernel, which needs CUDA, unless told not to"),
    (TORCH, "LBFGS"): Needs(closure=True, state_unmeasured="its figure is a full history_size=100 history, which two "
                            "steps do not fill", why="re-evaluates the loss through a closure"),
    (TORCH, "SparseAdam"): Needs(sparse=True, why="accepts sparse gradients only"),
    (PYOPT, "RAdam"): _WARMUP_STEPS,
    (PYOPT, "AdaShift"): Needs(steps=12, why="queues keep_num=10 gradients before its first update"),
    (PYOPT, "SRMM"): _WARMUP_STEPS,
    **{("schedulefree", name): Needs(still_steps=4, why="makes no update for its first 4 steps (rectification)")
       for name in ("RAdamScheduleFree", "RAdamScheduleFreeClosure")},
    (PYOPT, "A2Grad"): Needs(has_lr=False, why="has no lr: its step size follows its own schedule"),
    (PYOPT, "AliG"): Needs(has_lr=False, why="has no lr: it computes a Polyak step size capped by max_lr"),
    (TORCH, "Rprop"): Needs(lr_at_first_step=True, why="lr is only the initial step size; later ones adapt in state"),
    (TORCH, "ASGD"): Needs(lr_at_first_step=True, why="steps with the eta it computed from lr the step before"),
    (PYOPT, "Ranger21"): Needs({"num_iterations": 100}, notes_say="num_iterations",
                               why="needs the run length for its built-in lr schedule"),
    (PYOPT, "SaRA"): Needs(steps=10, partial=True, why="AdamW on masks of small-magnitude weights: in 10 steps at "
                           "lr=1e-2 it moves one entry of the conv kernel and nothing of the matrix or the vector"),
    # Wrappers of another optimizer, given SGD through the nested config (config/nested_optimizer.py):
    **{(PYOPT, name): Needs(nested={"optimizer": {"type": "SGD", "momentum": 0.9}}, why="wraps another optimizer")
       for name in ("Lookahead", "OrthoGrad", "ScheduleFreeWrapper", "PCGrad")},
    (PYOPT, "TRAC"): Needs({"s_prev": 1e-3}, nested={"optimizer": {"type": "SGD", "momentum": 0.9}},
                           why="its update scale starts at s_prev=1e-8, too small to move in 5 steps"),
    # The SAM family: a base optimizer nested as base_optimizer, stepped by the closure driver's order of passes.
    **{(PYOPT, name): Needs(nested={"base_optimizer": {"type": "SGD", "momentum": 0.9}},
                            why="SAM-style: wraps a base optimizer, steps with a closure")
       for name in ("SAM", "FriendlySAM", "LookSAM", "WSAM")},
    # Observed breaks of the contract, each expected (and re-checked) by the test:
    (DS, "DeepSpeedCPUAdam"): Needs(breaks="a state_dict round trip does not continue identically"),
    (PYOPT, "ApolloDQN"): Needs(breaks="a scheduler's lower lr does not change its update (it warms up from init_lr)"),
    (PYOPT, "BSAM"): Needs({"num_data": 8}, breaks="driven by the closure loop, the quadratic's loss rises over 5 "
                           "steps at lr=1e-2 (its noise and damping are tuned for training sets of num_data samples)"),
    (PYOPT, "FTRL"): Needs(breaks="a lower lr mid-run gives a much larger step (lr enters its closed-form weight)"),
    (PYOPT, "Ranger"): Needs(steps=10, breaks="the quadratic's loss rises over its first 10 steps at lr=1e-2"),
    (BNB, "PagedAdEMAMix"): Needs(breaks_state=_PAGED_CPU),
    (BNB, "PagedAdEMAMix8bit"): Needs(breaks_state=_PAGED_CPU),
}

# Compile-first sources: the contract runs eagerly (see Needs.eager); configs/faster_rcnn_torchao_adamw8bit.py and
# configs/faster_rcnn_heavyball_*.py train the detector on their compiled path.
_EAGER = Needs(eager=True, why="compiles each step per shape (5-50 s a class on 2 cores)")
_TORCHAO_STATE = replace(_EAGER, state_unmeasured=(
    "its 8-bit/4-bit/FP8 moments are tensor subclasses whose numel x element_size reports fp32; "
    "test_source_torchao.py measures their codes and scales"))
NEEDS.update({("heavyball", name): _EAGER for name in HEAVYBALL.specs})
NEEDS.update({
    **{("heavyball", name): replace(_EAGER, atol=1e-6, why="Kronecker-factor updates round differently after a "
                                    "state_dict round trip (~1e-8 apart after 3 steps)")
       for name in ("PSGDKron", "PSGDPRO", "QSGD")},
    ("heavyball", "SAMWrapper"): replace(_EAGER, breaks="takes no lr (its wrapped optimizer has it): lr=... is a "
                                         "TypeError", notes_say="takes no lr"),
})
NEEDS.update({("torchao", name): _TORCHAO_STATE for name in TORCHAO.specs})

# timm and grokadamw (sources/timm.py, sources/grokadamw.py):
NEEDS.update({
    ("timm", "Lookahead"): Needs(nested={"base_optimizer": {"type": "SGD", "momentum": 0.9}},
                                 why="wraps another optimizer, taken as base_optimizer"),
    ("timm", "Adahessian"): Needs(create_graph=True, why="Hutchinson Hessian-vector products of the gradients"),
    ("grokadamw", "GrokAdamW"): Needs(breaks="a state_dict round trip does not continue identically: it keeps its "
                                      "moments in param_groups keyed by the parameter tensors, not in optimizer.state"),
})


def package_key(package: str) -> str:
    """A pip name in PEP 503 form, so ``pytorch_optimizer`` and ``pytorch-optimizer`` match."""
    return re.sub(r"[-_.]+", "-", package).lower()


def class_key(entry: CatalogEntry) -> tuple[str, str]:
    """The (package, class name) an entry is looked up by in ``NEEDS``."""
    return package_key(entry.spec.source), entry.spec.class_name


def needs_for(entry: CatalogEntry, table: Mapping[tuple[str, str], Needs] = NEEDS) -> Needs:
    """What ``entry``'s class needs; nothing beyond lr when the table does not name it."""
    by_key = {(package_key(package), name): needs for (package, name), needs in table.items()}
    return by_key.get(class_key(entry), Needs())


def unknown_keys(table: Mapping[tuple[str, str], Any], entries: Mapping[str, CatalogEntry]) -> set[tuple[str, str]]:
    """The keys of ``table`` that name no catalogued (package, class): misspelt, or a class that went away."""
    classes = {class_key(entry) for entry in entries.values()}
    return {key for key in table if (package_key(key[0]), key[1]) not in classes}
