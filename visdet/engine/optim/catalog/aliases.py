"""Optimizer names from other ecosystems, mapped to visdet's registry: data plus a lookup.

Users paste ``optim="adamw_torch_fused"`` from a Hugging Face ``Trainer``,
``opt='sgd'`` from timm, or ``name: pytorch_adamw`` from LLM Foundry. Each
spelling here was read from that project's source (``transformers``'
``OptimizerNames`` and ``trainer_optimizer.py``, timm's ``_optim_factory.py``,
LLM Foundry's ``optim/__init__.py``) and mapped by hand to the class that
implements the same algorithm, with the keyword arguments the spelling itself
fixes (``fused=True``, ``nesterov=True``...). Spellings whose meaning visdet
cannot reproduce are not mapped to something close: they are *refused*, with
what to write instead. No library offers such a cross-ecosystem table, so it is
written here.

What an alias carries: the keywords the *name* selects, not the values the
other framework copies from its global arguments (HF's ``learning_rate``,
``adam_beta1/2``, ``adam_epsilon``, ``weight_decay``; timm's ``weight_decay=0``).
A visdet config sets those itself. timm's ``momentum=0.9``, which
``create_optimizer_v2`` gives every optimizer that has a momentum, *is*
carried: timm documents it as part of what those names mean.

Collisions: a bare name defined by several ecosystems means what the first of
``PRECEDENCE`` means (HF Trainer, then timm, then LLM Foundry); the others are
reachable as ``'timm:sgd'``. A colon, not a dot, because mmengine's Registry
reads ``scope.name``. An alias never shadows a registry name: real names are
looked up first (``registration.py``).

This module holds data and pure lookups only; it imports no backend.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Ecosystem key -> how messages and docs name it.
ORIGINS: Mapping[str, str] = MappingProxyType({
    "hf": "Hugging Face Trainer optim",
    "timm": "timm create_optimizer_v2",
    "llmfoundry": "LLM Foundry optimizer",
})
#: Which ecosystem a bare name means when several define it.
PRECEDENCE: tuple[str, ...] = ("hf", "timm", "llmfoundry")
SEPARATOR = ":"


@dataclass(frozen=True)
class Target:
    """The class an alias builds, named by its package (pip name) and class name.

    Named this way, not by registry name, because a registry name depends on
    which sources are installed and on the naming rule (``pytorch_optimizer_Lamb``
    vs ``Lamb``); the package and class do not.
    """

    package: str
    class_name: str

    def __str__(self) -> str:
        return f"{self.package}'s {self.class_name}"


@dataclass(frozen=True)
class Alias:
    """One accepted spelling.

    Attributes:
        name: The spelling, as the other ecosystem writes it.
        origin: Key of ``ORIGINS``.
        target: The class it builds.
        defaults: Keywords the spelling fixes; a config's own keywords win.
        note: How it differs from the origin's own class, when it does.
    """

    name: str
    origin: str
    target: Target
    defaults: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.origin}{SEPARATOR}{self.name}"


@dataclass(frozen=True)
class Refusal:
    """A spelling visdet recognises but will not map, and what to use instead."""

    name: str
    origin: str
    reason: str

    @property
    def qualified(self) -> str:
        return f"{self.origin}{SEPARATOR}{self.name}"


def _t(package: str, class_name: str) -> Target:
    return Target(package, class_name)


TORCH, BNB, DS = "torch", "bitsandbytes", "deepspeed"
TRANSFORMERS, SCHEDULEFREE, OPTIMI = "transformers", "schedulefree", "torch-optimi"
GALORE, APOLLO, PYOPT = "galore-torch", "apollo-torch", "pytorch-optimizer"
TIMM, GROKADAMW = "timm", "grokadamw"

_LION_BETAS = (
    "HF passes its adam_beta1/adam_beta2 (default (0.9, 0.999)) to Lion; this alias keeps Lion's own "
    "default betas (0.9, 0.99): set betas=(0.9, 0.999) to match a default HF run"
)
_LOW_RANK = (
    "HF gives the GaLore/APOLLO projection settings (rank, update_proj_gap, scale, proj_type) only to "
    "the optim_target_modules' parameter group; in visdet name those modules and settings in optim_wrapper.low_rank"
)

# --- Hugging Face transformers: OptimizerNames / trainer_optimizer.py -------------------------
_HF: tuple[Alias | Refusal, ...] = (
    Alias("adamw_torch", "hf", _t(TORCH, "AdamW")),
    Alias("adamw_torch_fused", "hf", _t(TORCH, "AdamW"), {"fused": True}),
    Alias("adafactor", "hf", _t(TRANSFORMERS, "Adafactor"), {"scale_parameter": False, "relative_step": False}),
    Alias("sgd", "hf", _t(TORCH, "SGD")),
    Alias("adagrad", "hf", _t(TORCH, "Adagrad")),
    Alias("rmsprop", "hf", _t(TORCH, "RMSprop")),
    # bitsandbytes: HF builds bnb's AdamW/Lion/RMSprop/AdEMAMix with optim_bits and is_paged;
    # bnb's named subclasses fix exactly those two.
    Alias("adamw_bnb_8bit", "hf", _t(BNB, "AdamW8bit")),
    Alias("adamw_8bit", "hf", _t(BNB, "AdamW8bit")),
    Alias("paged_adamw_32bit", "hf", _t(BNB, "PagedAdamW32bit")),
    Alias("paged_adamw_8bit", "hf", _t(BNB, "PagedAdamW8bit")),
    Alias("ademamix", "hf", _t(BNB, "AdEMAMix")),
    Alias("ademamix_8bit", "hf", _t(BNB, "AdEMAMix8bit")),
    Alias("paged_ademamix_32bit", "hf", _t(BNB, "PagedAdEMAMix32bit")),
    Alias("paged_ademamix_8bit", "hf", _t(BNB, "PagedAdEMAMix8bit")),
    Alias("lion_32bit", "hf", _t(BNB, "Lion32bit"), note=_LION_BETAS),
    Alias("lion_8bit", "hf", _t(BNB, "Lion8bit"), note=_LION_BETAS),
    Alias("paged_lion_32bit", "hf", _t(BNB, "PagedLion32bit"), note=_LION_BETAS),
    Alias("paged_lion_8bit", "hf", _t(BNB, "PagedLion8bit"), note=_LION_BETAS),
    Alias("rmsprop_bnb", "hf", _t(BNB, "RMSprop")),
    Alias("rmsprop_bnb_32bit", "hf", _t(BNB, "RMSprop32bit")),
    Alias("rmsprop_bnb_8bit", "hf", _t(BNB, "RMSprop8bit")),
    Alias("schedule_free_adamw", "hf", _t(SCHEDULEFREE, "AdamWScheduleFree")),
    Alias("schedule_free_sgd", "hf", _t(SCHEDULEFREE, "SGDScheduleFree")),
    Alias("schedule_free_radam", "hf", _t(SCHEDULEFREE, "RAdamScheduleFree")),
    Alias("stable_adamw", "hf", _t(OPTIMI, "StableAdamW"),
          note="HF passes its weight_decay (default 0.0); optimi's own default is 0.01"),
    Alias("galore_adamw", "hf", _t(GALORE, "GaLoreAdamW"), note=_LOW_RANK),
    Alias("galore_adamw_8bit", "hf", _t(GALORE, "GaLoreAdamW8bit"), note=_LOW_RANK),
    Alias("galore_adafactor", "hf", _t(GALORE, "GaLoreAdafactor"),
          {"scale_parameter": False, "relative_step": False}, note=_LOW_RANK),
    Alias("apollo_adamw", "hf", _t(APOLLO, "APOLLOAdamW"), note=_LOW_RANK),
    Refusal("galore_adamw_layerwise", "hf", "layer-wise GaLore (one optimizer per parameter, stepped from "
            "gradient hooks) is a wrapper in visdet, not an optimizer name: write optim_wrapper=dict("
            "type='InBackwardOptimWrapper', optimizer=dict(type='galore_adamw', ...), low_rank=dict(...)) "
            "(docs/training_loops.md)"),
    Refusal("galore_adamw_8bit_layerwise", "hf", "layer-wise GaLore (one optimizer per parameter, stepped from "
            "gradient hooks) is a wrapper in visdet, not an optimizer name: write optim_wrapper=dict("
            "type='InBackwardOptimWrapper', optimizer=dict(type='galore_adamw_8bit', ...), low_rank=dict(...)) "
            "(docs/training_loops.md)"),
    Refusal("galore_adafactor_layerwise", "hf", "layer-wise GaLore (one optimizer per parameter, stepped from "
            "gradient hooks) is a wrapper in visdet, not an optimizer name: write optim_wrapper=dict("
            "type='InBackwardOptimWrapper', optimizer=dict(type='galore_adafactor', ...), low_rank=dict(...)) "
            "(docs/training_loops.md)"),
    Refusal("apollo_adamw_layerwise", "hf", "layer-wise APOLLO (one optimizer per parameter, stepped from "
            "gradient hooks) is a wrapper in visdet, not an optimizer name: write optim_wrapper=dict("
            "type='InBackwardOptimWrapper', optimizer=dict(type='apollo_adamw', ...), low_rank=dict(...)) "
            "(docs/training_loops.md)"),
    # HF builds lomo-optim's classes over the model and calls fused_backward; visdet does both (fused_backward driver).
    Alias("lomo", "hf", _t("lomo-optim", "Lomo")),
    Alias("adalomo", "hf", _t("lomo-optim", "AdaLomo")),
    Refusal("adamw_torch_xla", "hf", "torch_xla's syncfree AdamW needs an XLA device; on CPU/CUDA use 'adamw_torch'"),
    Refusal("adamw_torch_npu_fused", "hf", "torch_npu's fused AdamW needs an Ascend NPU; use 'adamw_torch_fused'"),
    Refusal("adamw_anyprecision", "hf", "torchdistx's AnyPrecisionAdamW is not a visdet source; use 'adamw_torch' "
            "(AmpOptimWrapper for bfloat16)"),
    # HF's Trainer builds torchao.optim's AdamW4bit / AdamW8bit for these (trainer_optimizer.py).
    Alias("adamw_torch_4bit", "hf", _t("torchao", "AdamW4bit")),
    Alias("adamw_torch_8bit", "hf", _t("torchao", "AdamW8bit")),
    Alias("grokadamw", "hf", _t(GROKADAMW, "GrokAdamW"),
          note="HF passes GrokAdamW's own defaults and no grokking_signal_fns: from a config, as from HF, the "
               "grokking signal is 0"),
)

# timm's own classes (timm is a source since issue 15): the rest of timm 1.0.31's names, with the
# defaults its OptimInfo table gives them (plus momentum=0.9 where it has one, as create_optimizer_v2
# does); tests/engine/optim/catalog/test_source_timm.py holds this to timm's registry. A 'c' in front
# is caution=True, a 'c' at the end corrected_weight_decay=True.
_TIMM_OWN: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("adafactorbv", "AdafactorBigVision", dict(momentum=0.9)),
    ("adafactorbvc", "AdafactorBigVision", dict(corrected_weight_decay=True, momentum=0.9)),
    ("adahessian", "Adahessian", dict()),
    ("adamc", "AdamWLegacy", dict(corrected_weight_decay=True)),
    ("adamuon", "Muon", dict(algo='adamuon', momentum=0.9)),
    ("adamwlegacy", "AdamWLegacy", dict()),
    ("adan", "Adan", dict(no_prox=False)),
    ("adanw", "Adan", dict(no_prox=True)),
    ("adoptc", "Adopt", dict(decoupled=True, corrected_weight_decay=True)),
    ("cadafactor", "Adafactor", dict(caution=True, betas=(0.9, 0.999))),
    ("cadafactorbv", "AdafactorBigVision", dict(caution=True, momentum=0.9)),
    ("cadafactorbvc", "AdafactorBigVision", dict(caution=True, corrected_weight_decay=True, momentum=0.9)),
    ("cadamc", "AdamWLegacy", dict(caution=True, corrected_weight_decay=True)),
    ("cadamp", "AdamP", dict(wd_ratio=0.01, nesterov=True, caution=True)),
    ("cadamw", "AdamWLegacy", dict(caution=True)),
    ("cadan", "Adan", dict(caution=True, no_prox=False)),
    ("cadanw", "Adan", dict(caution=True, no_prox=True)),
    ("cadopt", "Adopt", dict(caution=True)),
    ("cadoptc", "Adopt", dict(decoupled=True, caution=True, corrected_weight_decay=True)),
    ("cadoptw", "Adopt", dict(decoupled=True, caution=True)),
    ("clamb", "Lamb", dict(caution=True)),
    ("clambw", "Lamb", dict(caution=True, decoupled_decay=True)),
    ("claprop", "LaProp", dict(caution=True)),
    ("clion", "Lion", dict(caution=True)),
    ("clionc", "Lion", dict(caution=True, corrected_weight_decay=True)),
    ("cmars", "Mars", dict(caution=True)),
    ("cnadamc", "NAdamW", dict(caution=True, corrected_weight_decay=True)),
    ("cnadamw", "NAdamW", dict(caution=True)),
    ("crmsproptf", "RMSpropTF", dict(alpha=0.9, caution=True, momentum=0.9)),
    ("csgdc", "SGDW", dict(nesterov=True, caution=True, corrected_weight_decay=True, momentum=0.9)),
    ("csgdp", "SGDP", dict(nesterov=True, caution=True, momentum=0.9)),
    ("csgdw", "SGDW", dict(nesterov=True, caution=True, momentum=0.9)),
    ("kronc", "Kron", dict(decoupled_decay=True, corrected_weight_decay=True, momentum=0.9)),
    ("lambc", "Lamb", dict(trust_clip=True)),
    ("lambcd", "Lamb", dict(decoupled_decay=True, corrected_weight_decay=True)),
    ("lambcw", "Lamb", dict(trust_clip=True, decoupled_decay=True)),
    ("laprop", "LaProp", dict()),
    ("lapropc", "LaProp", dict(corrected_weight_decay=True)),
    ("larc", "Lars", dict(trust_clip=True, momentum=0.9)),
    ("lionc", "Lion", dict(corrected_weight_decay=True)),
    ("nadamc", "NAdamW", dict(corrected_weight_decay=True)),
    ("nadamlegacy", "NAdamLegacy", dict()),
    ("nadamuon", "Muon", dict(algo='adamuon', nesterov=True, momentum=0.9)),
    ("nadamw", "NAdamW", dict()),
    ("nesterovw", "SGDW", dict(nesterov=True, momentum=0.9)),
    ("nlarc", "Lars", dict(nesterov=True, trust_clip=True, momentum=0.9)),
    ("nmuon", "Muon", dict(nesterov=True, momentum=0.9)),
    ("novogradc", "NvNovoGrad", dict(decoupled_decay=True, corrected_weight_decay=True)),
    ("novogradw", "NvNovoGrad", dict(decoupled_decay=True)),
    ("radamlegacy", "RAdamLegacy", dict()),
    ("rmsproptf", "RMSpropTF", dict(alpha=0.9, momentum=0.9)),
    ("rmsproptfc", "RMSpropTF", dict(alpha=0.9, decoupled_decay=True, corrected_weight_decay=True, momentum=0.9)),
    ("rmsproptfw", "RMSpropTF", dict(alpha=0.9, decoupled_decay=True, momentum=0.9)),
    ("sgdc", "SGDW", dict(nesterov=True, corrected_weight_decay=True, momentum=0.9)),
)

# --- timm: _optim_factory.py (create_optimizer_v2 adds momentum=0.9 where the optimizer has one) ------
_TIMM: tuple[Alias | Refusal, ...] = (
    Alias("sgd", "timm", _t(TORCH, "SGD"), {"nesterov": True, "momentum": 0.9}),
    Alias("nesterov", "timm", _t(TORCH, "SGD"), {"nesterov": True, "momentum": 0.9}),
    Alias("momentum", "timm", _t(TORCH, "SGD"), {"nesterov": False, "momentum": 0.9}),
    Alias("adam", "timm", _t(TORCH, "Adam")),
    Alias("adamw", "timm", _t(TORCH, "AdamW")),
    Alias("nadam", "timm", _t(TORCH, "NAdam")),
    Alias("radam", "timm", _t(TORCH, "RAdam")),
    Alias("radamw", "timm", _t(TORCH, "RAdam"), {"decoupled_weight_decay": True}),
    Alias("adamax", "timm", _t(TORCH, "Adamax")),
    Alias("adadelta", "timm", _t(TORCH, "Adadelta")),
    Alias("adagrad", "timm", _t(TORCH, "Adagrad"), {"eps": 1e-8}),
    Alias("rmsprop", "timm", _t(TORCH, "RMSprop"), {"alpha": 0.9, "momentum": 0.9}),
    Alias("adafactor", "timm", _t(TRANSFORMERS, "Adafactor"), {"scale_parameter": True, "relative_step": False},
          note="timm's Adafactor (like transformers', a port of fairseq's) turns relative_step off when an lr is "
               "given; it factors only dimensions >= 16, transformers' every matrix"),
    Alias("lion", "timm", _t(BNB, "Lion"), note="bitsandbytes' 32-bit Lion: same update and defaults as timm's"),
    Alias("muon", "timm", _t(TORCH, "Muon"),
          note="like timm's, non-matrix parameters go to an AdamW fallback (visdet's constructor routes them)"),
    Alias("lamb", "timm", _t(PYOPT, "Lamb"), {"weight_decouple": False},
          note="pytorch-optimizer's Lamb: grad averaging and global grad-norm clipping (1.0) as in timm's"),
    Alias("lambw", "timm", _t(PYOPT, "Lamb"), {"weight_decouple": True}),
    Alias("lars", "timm", _t(PYOPT, "LARS"), {"momentum": 0.9}),
    Alias("nlars", "timm", _t(PYOPT, "LARS"), {"momentum": 0.9, "nesterov": True}),
    Alias("adopt", "timm", _t(PYOPT, "ADOPT")),
    Alias("adoptw", "timm", _t(PYOPT, "ADOPT"), {"weight_decouple": True}),
    Alias("adabelief", "timm", _t(PYOPT, "AdaBelief"), {"rectify": False}),
    Alias("radabelief", "timm", _t(PYOPT, "AdaBelief"), {"rectify": True}),
    Alias("madgrad", "timm", _t(PYOPT, "MADGRAD"), {"momentum": 0.9}),
    Alias("madgradw", "timm", _t(PYOPT, "MADGRAD"), {"momentum": 0.9, "weight_decouple": True}),
    Alias("novograd", "timm", _t(PYOPT, "NovoGrad"), note="timm's NvNovoGrad; same betas (0.95, 0.98)"),
    Alias("adamp", "timm", _t(PYOPT, "AdamP"), {"wd_ratio": 0.01, "nesterov": True}),
    Alias("sgdp", "timm", _t(PYOPT, "SGDP"), {"momentum": 0.9, "nesterov": True}),
    Alias("sgdw", "timm", _t(PYOPT, "SGDW"), {"momentum": 0.9, "nesterov": True}),
    Alias("kron", "timm", _t(PYOPT, "Kron"), {"momentum": 0.9, "weight_decouple": False}),
    Alias("kronw", "timm", _t(PYOPT, "Kron"), {"momentum": 0.9, "weight_decouple": True}),
    Alias("mars", "timm", _t(PYOPT, "MARS")),
    Refusal("bnbsgd", "timm", "timm asks bitsandbytes' SGD for Nesterov momentum, which that class accepts and "
            "ignores; use 'timm:sgd' for Nesterov SGD, or type='bnb_SGD', momentum=0.9 for classical momentum"),
    Refusal("bnbsgd8bit", "timm", "timm asks bitsandbytes' SGD8bit for Nesterov momentum, which that class accepts "
            "and ignores; use type='SGD8bit', momentum=0.9 for classical momentum"),
    Alias("bnbadam", "timm", _t(BNB, "Adam")),
    Alias("bnbadam8bit", "timm", _t(BNB, "Adam8bit"),
          note="timm's table points this name at bnb's Adam (32-bit by default) although its description says "
               "8-bit; visdet follows the name"),
    Alias("bnbadamw", "timm", _t(BNB, "AdamW")),
    Alias("bnbadamw8bit", "timm", _t(BNB, "AdamW8bit"),
          note="timm's table points this name at bnb's AdamW (32-bit by default); visdet follows the name"),
    Alias("bnblion", "timm", _t(BNB, "Lion")),
    Alias("bnblion8bit", "timm", _t(BNB, "Lion8bit")),
    Alias("bnbademamix", "timm", _t(BNB, "AdEMAMix")),
    Alias("bnbademamix8bit", "timm", _t(BNB, "AdEMAMix8bit")),
    # NVIDIA Apex's fused optimizers: DeepSpeed's FusedAdam/FusedLamb are ports with the same arguments.
    Alias("fusedadam", "timm", _t(DS, "FusedAdam"), {"adam_w_mode": False}),
    Alias("fusedadamw", "timm", _t(DS, "FusedAdam"), {"adam_w_mode": True}),
    Alias("fusedlamb", "timm", _t(DS, "FusedLamb")),
    Refusal("fusedsgd", "timm", "Apex's FusedSGD is not a visdet source; use type='SGD', nesterov=True, momentum=0.9 "
            "(visdet picks torch's fused/foreach kernel)"),
    Refusal("fusednovograd", "timm", "Apex's FusedNovoGrad is not a visdet source; use 'novograd' "
            "(pytorch-optimizer's NovoGrad) with betas=(0.95, 0.98)"),
    *(Alias(name, "timm", _t(TIMM, class_name), defaults) for name, class_name, defaults in _TIMM_OWN),
)

# --- LLM Foundry: llmfoundry/optim/__init__.py ----------------------------------------------------
# register_pytorch_optimizers() registers every torch.optim class except LBFGS as
# 'pytorch_' + its lower-case name.
_FOUNDRY_TORCH = ("Adadelta", "Adafactor", "Adagrad", "Adam", "Adamax", "AdamW", "ASGD", "Muon", "NAdam", "RAdam",
                  "RMSprop", "Rprop", "SGD", "SparseAdam")
_DECOUPLED = (
    "its weight decay is scaled by lr / initial lr (Composer's decoupled scaling), torch's by lr itself, so the "
    "same number means a different decay"
)
_FOUNDRY: tuple[Alias | Refusal, ...] = (
    *(Alias(f"pytorch_{c.lower()}", "llmfoundry", _t(TORCH, c)) for c in _FOUNDRY_TORCH),
    Refusal("decoupled_adamw", "llmfoundry", f"{_DECOUPLED}; use type='AdamW' with weight_decay = "
            "(your decoupled weight_decay) / (your initial lr)"),
    Refusal("decoupled_lionw", "llmfoundry", f"{_DECOUPLED}; use type='Lion' with weight_decay = "
            "(your decoupled weight_decay) / (your initial lr)"),
    Refusal("clip_lion", "llmfoundry", "DecoupledClipLion (Lion that skips outlier-gradient coordinates) has no "
            "implementation among visdet's sources; use 'Lion' with clip_grad in optim_wrapper"),
    Refusal("adalr_lion", "llmfoundry", "DecoupledAdaLRLion (Lion with a per-layer adaptive lr) has no "
            "implementation among visdet's sources; use 'Lion'"),
    Refusal("no_op", "llmfoundry", "a no-op optimizer is not offered; to freeze parameters use "
            "requires_grad=False or paramwise_cfg custom_keys lr_mult=0"),
)

_ALL: tuple[Alias | Refusal, ...] = (*_HF, *_TIMM, *_FOUNDRY)


def _index() -> tuple[dict[str, Alias | Refusal], dict[str, Alias | Refusal]]:
    by_qualified: dict[str, Alias | Refusal] = {}
    for item in _ALL:
        if item.origin not in ORIGINS:
            raise ValueError(f"alias {item.name!r}: unknown origin {item.origin!r}")
        if item.qualified in by_qualified:
            raise ValueError(f"alias {item.qualified!r} is defined twice")
        by_qualified[item.qualified] = item
    bare: dict[str, Alias | Refusal] = {}
    for origin in PRECEDENCE:  # first ecosystem to define a bare name keeps it
        for item in _ALL:
            if item.origin == origin:
                bare.setdefault(item.name, item)
    return by_qualified, bare


_BY_QUALIFIED, _BY_BARE = _index()


def find(name: str) -> Alias | Refusal | None:
    """The alias or refusal a spelling means (``'sgd'``, ``'timm:sgd'``), or None.

    Callers look up registry names first: this is only consulted for names the
    registry does not have.
    """
    if SEPARATOR in name:
        return _BY_QUALIFIED.get(name)
    return _BY_BARE.get(name)


def all_spellings(qualified: bool = False) -> list[str]:
    """Every bare spelling (and the qualified ones too if asked), for did-you-mean lists."""
    return [*_BY_BARE, *(_BY_QUALIFIED if qualified else ())]


def table() -> list[Alias | Refusal]:
    """Every alias and refusal, grouped by ecosystem in ``PRECEDENCE`` order."""
    return sorted(_ALL, key=lambda item: PRECEDENCE.index(item.origin))


def is_bare_winner(item: Alias | Refusal) -> bool:
    """Whether the bare spelling of ``item`` means ``item`` (it won any collision)."""
    return _BY_BARE.get(item.name) is item


def describe(item: Alias | Refusal) -> str:
    """``"'adamw_torch_fused' (Hugging Face Trainer optim)"`` for messages."""
    return f"'{item.name}' ({ORIGINS[item.origin]})"


def defaults_text(defaults: Mapping[str, Any]) -> str:
    """``"fused=True, momentum=0.9"`` or ``""``."""
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())
