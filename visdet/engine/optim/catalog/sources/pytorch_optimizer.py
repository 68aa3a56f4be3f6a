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

from dataclasses import replace

from visdet.engine.optim.catalog.notes import LR_IS_A_MULTIPLIER, RECTIFICATION_WARMUP, SCHEDULE_FREE_MODES
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec, facts

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
_WRAP = "wraps another optimizer, nested in the config: dict(type=..., optimizer=dict(type='AdamW', lr=1e-4))"
_MUON = (
    "visdet's constructor builds its use_muon groups with the Muon routing: matrices and conv kernels get the "
    "Muon update (lr, weight_decay), the rest its AdamW part (adamw_lr, adamw_wd)"
)
_SCHEDULE_FREE = SCHEDULE_FREE_MODES
_IN_BACKWARD = ("takes the model; updates inside backward (fused_backward): no paramwise_cfg, no "
                "gradient accumulation, clip_grad becomes its own clip_grad_norm/clip_grad_value")
_WARMUP = RECTIFICATION_WARMUP
_SECOND_ORDER = ("Hutchinson Hessian-diagonal estimates: visdet's second-order driver back-propagates with "
                 "create_graph=True on the steps that make one (not under DeepSpeed/FSDP, DDP, float16 loss scaling)")

# What each class needs beyond a plain backward(); step() with only lr.
SPECIAL: dict[str, OptimizerSpec] = {
    "AdaHessian": facts(needs=(Need.CREATE_GRAPH,), notes=_SECOND_ORDER),
    "SophiaH": facts(needs=(Need.CREATE_GRAPH,), notes=_SECOND_ORDER),
    "AliG": facts(needs=(Need.CLOSURE,), notes="its step size comes from the loss the closure returns"),
    "SAM": facts(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "FriendlySAM": facts(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "LookSAM": facts(needs=(Need.BASE_OPTIMIZER, Need.CLOSURE), notes=_SAM),
    "GSAM": facts(needs=(Need.BASE_OPTIMIZER, Need.MODEL, Need.CLOSURE, Need.OWN_LOOP),
                  notes=_SAM + "; its own loop: set_closure(loss_fn, inputs, targets) with a closure returning "
                  "(outputs, loss), and a rho_scheduler object tied to the lr scheduler, neither of which a config "
                  "or visdet's closure driver gives; use SAM, WSAM or LookSAM"),
    "WSAM": facts(needs=(Need.BASE_OPTIMIZER, Need.MODEL, Need.CLOSURE), notes=_SAM),
    "BSAM": facts(needs=(Need.CLOSURE,), notes=_SAM + "; also needs num_data (the training-set size)"),
    "Lookahead": facts(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "OrthoGrad": facts(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "TRAC": facts(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP),
    "ScheduleFreeWrapper": facts(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP + "; " + _SCHEDULE_FREE),
    "PCGrad": facts(needs=(Need.BASE_OPTIMIZER,), notes=_WRAP + "; multi-task: pc_backward(losses) replaces backward"),
    "SafeFP16Optimizer": facts(needs=(Need.BASE_OPTIMIZER, Need.FP16_WEIGHTS), notes=_WRAP + "; for fp16 weights"),
    "LOMO": facts(needs=(Need.MODEL,), notes=_IN_BACKWARD),
    "AdaLOMO": facts(needs=(Need.MODEL,), notes=_IN_BACKWARD),
    "AdamMini": facts(needs=(Need.MODEL,), notes="groups the model's parameters by block itself (transformer layouts)"),
    "Muon": facts(needs=(Need.PARAM_LAYOUT,), notes=_MUON, layout="use_muon"),
    "AdaMuon": facts(needs=(Need.PARAM_LAYOUT,), notes=_MUON, layout="use_muon"),
    "AdaGO": facts(needs=(Need.PARAM_LAYOUT,), notes=_MUON, layout="use_muon"),
    "MuonClip": facts(needs=(Need.PARAM_LAYOUT,), layout="use_muon", notes=_MUON + "; its per-head query/key "
                      "clipping acts only when step(attention_max_logits=...) is given, which a detector never does"),
    "NorMuon": facts(needs=(Need.PARAM_LAYOUT,), notes=_MUON, layout="use_muon"),
    "DistributedMuon": facts(needs=(Need.PARAM_LAYOUT, Need.DISTRIBUTED), layout="use_muon_shapes",
                             notes=_MUON + "; one Muon group per shape, as its all_gather of each block of "
                             "world-size tensors needs equal shapes"),
    "SpectralSphere": facts(notes="2-D parameters only: visdet routes the rest to a fallback (AdamW)",
                            matrix_only=True),
    "LoRARite": facts(needs=(Need.LORA_ADAPTERS,), notes="expects LoRA factors in alternating A, B order"),
    "DeMo": facts(needs=(Need.DISTRIBUTED,), matrix_only=True,
                 notes="compressed momentum exchange over a process group (replaces DDP's all-reduce); its DCT "
                       "fails on 4-D conv kernels, so visdet gives it 2-D weights (flatten_conv=True: conv kernels "
                       "as 2-D views) and the rest to a fallback (AdamW)"),
    "Ranger21": facts(notes="needs num_iterations (the total number of steps) for its built-in schedule"),
    "ScheduleFreeAdamW": facts(notes=_SCHEDULE_FREE),
    "ScheduleFreeSGD": facts(notes=_SCHEDULE_FREE),
    "ScheduleFreeRAdam": facts(notes=_SCHEDULE_FREE + "; " + _WARMUP),
    "RAdam": facts(notes=_WARMUP),
    "AdaShift": facts(notes="updates start after keep_num (10) steps of gradient history"),
    "Prodigy": facts(notes=LR_IS_A_MULTIPLIER),
}

# Descriptions and state sizes for the optimizers people ask for by name.
NOTABLE: dict[str, OptimizerSpec] = {
    "SOAP": facts("SOAP: Adam in Shampoo's preconditioner eigenbasis (Vyas et al., 2024)", None,
                 "8 + Kronecker factors and eigenbases per matrix"),
    "ADOPT": facts("ADOPT: Adam that converges for any beta2 (Taniguchi et al., 2024)", 8),
    "MARS": facts("MARS: variance-reduced preconditioned updates (Yuan et al., 2024)", 12),
    "Kron": facts("PSGD Kron: Kronecker-factored preconditioned SGD (Li, 2018/2024)", None,
                 "4 + Kronecker factors per tensor"),
    "AdEMAMix": facts("AdEMAMix: Adam with a second, slow EMA of gradients (Pagliardini et al., 2024)", 12),
    "AdamMini": facts("Adam-mini: one second moment per parameter block (Zhang et al., 2024)", None,
                      "~4 + one scalar per block"),
    "Lamb": facts("LAMB: layer-wise adaptive large-batch Adam (You et al., 2019)", 8),
    "LARS": facts("LARS: layer-wise adaptive rate scaling SGD", 4, "with momentum"),
    "SophiaH": facts("Sophia-H: clipped updates preconditioned by Hutchinson Hessian estimates", 12,
                    "momentum, Hessian moment and Hessian estimate"),
    "Ranger": facts("Ranger: RAdam + Lookahead + gradient centralisation", 12),
    "Ranger21": facts("Ranger21: AdamW + positive-negative momentum + Lookahead + schedule", None),
    "Lion": facts("Lion: sign of interpolated momentum (Chen et al., 2023)", 4),
    "AdaFactor": facts("AdaFactor, BigVision variant: factored second moments", None, "sub-linear"),
}


def _facts(class_name: str) -> OptimizerSpec:
    """A class's description and state size (NOTABLE) with what it needs and its capabilities (SPECIAL)."""
    notable, special = NOTABLE.get(class_name, facts()), SPECIAL.get(class_name, facts())
    # replace(): SPECIAL's capabilities (layout, matrix_only...) come along with its needs and notes.
    return replace(special, description=notable.description, state_bytes=notable.state_bytes,
                   state_note=notable.state_note)


SOURCE = Source(
    rank=110, package="pytorch-optimizer", export_modules=(MODULE,),
    specs={name: _facts(name) for name in KNOWN},
    facts_for=_facts,
)
