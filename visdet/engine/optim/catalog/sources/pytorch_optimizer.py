"""pytorch-optimizer: kozistr's catalogue of 130+ optimizers (SOAP, ADOPT, MARS, Kron...).

It ranks last, so a class name an earlier source uses is registered with the
``pytorch_optimizer_`` prefix (``pytorch_optimizer_Lion``, ``..._Adan``,
``..._LARS``, ``..._DAdaptAdam``...). torch classes it merely re-exports
(``Adam``, ``SGD``...) are left to torch. Cautious variants are not classes:
pass ``cautious=True`` to the optimizers that take it (ADOPT, MARS, Lion,
AdEMAMix, AdaFactor, AdamP, LaProp, AdaShift in 4.1).

``KNOWN`` is the 4.1.0 catalogue, so the names stay listed (and later
sources' names stay put) when the package is absent; classes a newer release
adds are found by the source scan. ``SPECIAL`` records what a plain
``backward(); step()`` loop with only ``lr`` cannot give each class, checked
by stepping every class on CPU with pytorch-optimizer 4.1.0.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta, Need
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "pytorch_optimizer.optimizer"

KNOWN = """
A2Grad ADOPT APOLLO ASGD AccSGD AdEMAMix AdaBelief AdaBound AdaDelta AdaFactor AdaGC AdaGO
AdaHessian AdaLOMO AdaMax AdaMod AdaMuon AdaNorm AdaPNM AdaShift AdaSmooth AdaTAM Adai Adalite AdamC
AdamG AdamMini AdamP AdamS AdamWSN Adan AggMo Aida AliG Alice Amos Ano ApolloDQN AvaGrad BCOS BSAM
CAME Conda DASH DAdaptAdaGrad DAdaptAdam DAdaptAdan DAdaptLion DAdaptSGD DeMo DiffGrad
DistributedMuon DualAdam EXAdam EmoFact EmoLynx EmoNavi FAdam FOCUS FTRL Fira FlashAdamW FriendlySAM
Fromage GSAM GaLore Grams Gravity GrokFastAdamW Kate Kron LARS LOMO LaProp Lamb Lion LoRARite
LookSAM Lookahead MADGRAD MARS MSVAG Magma Muon MuonClip Nero NorMuon NovoGrad OrthoGrad PAdam
PCGrad PID PNM Prodigy QHAdam QHM RACS RAdam ROSE Ranger Ranger21 SAM SCION SCIONLight SGDP SGDSaI
SGDW SM3 SOAP SPAM SPlus SRMM SWATS SaRA SafeFP16Optimizer ScalableShampoo ScheduleFreeAdamW
ScheduleFreeRAdam ScheduleFreeSGD ScheduleFreeWrapper Shampoo SignSGD SimplifiedAdEMAMix SophiaH
SpectralSphere StableAdamW StableSPAM TAM TRAC Tiger VSGD WSAM Yogi
""".split()

_SAM = "sharpness-aware: first_step/second_step around two forward-backward passes"
_WRAP = "wraps an optimizer instance: Cls(optimizer=AdamW(model.parameters()), ...)"
_MUON = "expects groups flagged use_muon (see pytorch_optimizer.prepare_muon_parameters); visdet's Muon route covers torch's Muon"
_SCHEDULE_FREE = (
    "call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
    "(visdet's ScheduleFreeHook does both in the Runner)"
)
_WARMUP = "makes no update for its first steps (rectification warm-up)"

# What each class needs beyond a plain backward(); step() with only lr.
SPECIAL: dict[str, Meta] = {
    "AdaHessian": Meta(needs=(Need.CREATE_GRAPH,), notes="Hutchinson Hessian-diagonal estimates"),
    "SophiaH": Meta(needs=(Need.CREATE_GRAPH,), notes="Hutchinson Hessian-diagonal estimates"),
    "AliG": Meta(needs=(Need.CLOSURE,), notes="its step size comes from the loss the closure returns"),
    "SAM": Meta(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "FriendlySAM": Meta(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "LookSAM": Meta(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "GSAM": Meta(needs=(Need.BASE_OPTIMIZER, Need.MODEL, Need.CLOSURE), notes=_SAM + "; also rho_scheduler"),
    "WSAM": Meta(needs=(Need.BASE_OPTIMIZER, Need.MODEL, Need.CLOSURE), notes=_SAM),
    "BSAM": Meta(needs=(Need.CLOSURE,), notes=_SAM + "; also needs num_data (the training-set size)"),
    "Lookahead": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "OrthoGrad": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "TRAC": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "ScheduleFreeWrapper": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP + "; " + _SCHEDULE_FREE),
    "PCGrad": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP + "; multi-task: pc_backward(losses) replaces backward"),
    "SafeFP16Optimizer": Meta(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP + "; for fp16 weights"),
    "LOMO": Meta(needs=(Need.MODEL,), notes="updates inside backward: call fused_backward(loss, lr) instead of backward(); step()"),
    "AdaLOMO": Meta(needs=(Need.MODEL,), notes="updates inside backward: call fused_backward(loss, lr) instead of backward(); step()"),
    "AdamMini": Meta(needs=(Need.MODEL,), notes="groups the model's parameters by block itself (transformer layouts)"),
    "Muon": Meta(needs=(Need.PARAM_LAYOUT,), notes=_MUON),
    "AdaMuon": Meta(needs=(Need.PARAM_LAYOUT,), notes=_MUON),
    "AdaGO": Meta(needs=(Need.PARAM_LAYOUT,), notes=_MUON),
    "MuonClip": Meta(needs=(Need.PARAM_LAYOUT,), notes=_MUON + "; per-head query/key clipping needs attention layers"),
    "NorMuon": Meta(needs=(Need.PARAM_LAYOUT,), notes=_MUON),
    "DistributedMuon": Meta(needs=(Need.PARAM_LAYOUT, Need.DISTRIBUTED), notes=_MUON),
    "SpectralSphere": Meta(needs=(Need.PARAM_LAYOUT,), notes="2-D parameters only"),
    "LoRARite": Meta(needs=(Need.PARAM_LAYOUT,), notes="expects LoRA factors in alternating A, B order"),
    "DeMo": Meta(needs=(Need.DISTRIBUTED, Need.PARAM_LAYOUT),
                 notes="compressed momentum exchange over a process group; its DCT fails on 4-D conv kernels in 4.1"),
    "Ranger21": Meta(notes="needs num_iterations (the total number of steps) for its built-in schedule"),
    "ScheduleFreeAdamW": Meta(notes=_SCHEDULE_FREE),
    "ScheduleFreeSGD": Meta(notes=_SCHEDULE_FREE),
    "ScheduleFreeRAdam": Meta(notes=_SCHEDULE_FREE + "; " + _WARMUP),
    "RAdam": Meta(notes=_WARMUP),
    "AdaShift": Meta(notes="updates start after keep_num (10) steps of gradient history"),
    "Prodigy": Meta(notes="set lr=1.0: lr scales the estimated step size"),
}

# Descriptions and state sizes for the optimizers people ask for by name.
NOTABLE: dict[str, Meta] = {
    "SOAP": Meta("SOAP: Adam in Shampoo's preconditioner eigenbasis (Vyas et al., 2024)", None,
                 "8 + Kronecker factors and eigenbases per matrix"),
    "ADOPT": Meta("ADOPT: Adam that converges for any beta2 (Taniguchi et al., 2024)", 8),
    "MARS": Meta("MARS: variance-reduced preconditioned updates (Yuan et al., 2024)", 12),
    "Kron": Meta("PSGD Kron: Kronecker-factored preconditioned SGD (Li, 2018/2024)", None,
                 "4 + Kronecker factors per tensor"),
    "AdEMAMix": Meta("AdEMAMix: Adam with a second, slow EMA of gradients (Pagliardini et al., 2024)", 12),
    "AdamMini": Meta("Adam-mini: one second moment per parameter block (Zhang et al., 2024)", None, "~4 + one scalar per block"),
    "Lamb": Meta("LAMB: layer-wise adaptive large-batch Adam (You et al., 2019)", 8),
    "LARS": Meta("LARS: layer-wise adaptive rate scaling SGD", 4, "with momentum"),
    "SophiaH": Meta("Sophia-H: clipped updates preconditioned by Hutchinson Hessian estimates", 8),
    "Ranger": Meta("Ranger: RAdam + Lookahead + gradient centralisation", 12),
    "Ranger21": Meta("Ranger21: AdamW + positive-negative momentum + Lookahead + schedule", None),
    "Lion": Meta("Lion: sign of interpolated momentum (Chen et al., 2023)", 4),
    "AdaFactor": Meta("AdaFactor, BigVision variant: factored second moments", None, "sub-linear"),
}


def _meta(class_name: str) -> Meta:
    notable, special = NOTABLE.get(class_name, Meta()), SPECIAL.get(class_name, Meta())
    return Meta(
        notable.description,
        notable.state_bytes,
        notable.state_note,
        needs=special.needs,
        notes=special.notes,
    )


class PytorchOptimizerSource(Source):
    """Optimizers defined by ``pytorch_optimizer``."""

    def __init__(self) -> None:
        super().__init__(
            package="pytorch-optimizer",
            top_level="pytorch_optimizer",
            title="pytorch-optimizer",
            install_hint="pip install pytorch-optimizer",
            prefix="pytorch_optimizer_",
            export_modules=(MODULE,),
            known=tuple(Found(n, MODULE) for n in KNOWN),
        )

    def meta(self, class_name: str) -> Meta:
        return _meta(class_name)
