"""timm (``timm.optim``): Ross Wightman's optimizers for vision training, as a source.

timm 1.0.x ships its own implementations (NAdamW, RMSpropTF, Adan, Lamb, LaProp,
Mars, Kron, Muon/AdaMuon, AdafactorBigVision, the ``*Legacy`` classes...), most of
them with timm's ``caution`` and ``corrected_weight_decay`` switches. It ranks
after pytorch-optimizer, so every class name an earlier source has gets the
``timm_`` prefix (``timm_Lamb``, ``timm_Lion``, ``timm_Adan``, ``timm_Muon``,
``timm_Kron``...); names unique to timm stay plain (``NAdamW``, ``RMSpropTF``,
``NvNovoGrad``, ``AdamWLegacy``...). Names compare exactly, so ``Adopt``,
``Mars``, ``Lars`` and ``Adahessian`` are timm's next to pytorch-optimizer's
``ADOPT``, ``MARS``, bitsandbytes' ``LARS`` and pytorch-optimizer's ``AdaHessian``.
timm's ``create_optimizer_v2`` spellings (``cadamw``, ``nadamc``, ``adamuon``...)
are aliases (``catalog/aliases.py``).

``specs`` is timm 1.0.31's ``timm.optim`` (checked by stepping every class on
CPU); ``Kron`` lives in ``timm.optim.kron``, which ``timm.optim`` does not
re-export. The torch classes ``timm.optim`` re-exports stay torch's.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

_CAUTION = "caution=True masks update entries whose sign disagrees with the gradient (timm's c* names)"
_CORRECTED = "corrected_weight_decay=True scales decay by lr^2 / max lr (timm's *c names)"
_BOTH = f"{_CAUTION}; {_CORRECTED}"

SOURCE = Source(
    rank=150, package="timm", title="timm", export_modules=("timm.optim", "timm.optim.kron"),
    specs={
        "AdaBelief": facts("AdaBelief: Adam with the belief in the observed gradient as second moment", 8),
        "Adafactor": facts("Adafactor (fairseq port): factored second moments, dims >= 16 factored", None,
                           "sub-linear", notes=f"{_CAUTION}; with lr given, relative steps are off"),
        "AdafactorBigVision": facts("Adafactor, Big Vision variant: factored second moments, bf16 momentum", None,
                                    "~2 (bf16 momentum) + factored second moments", notes=_BOTH),
        "Adahessian": facts("AdaHessian: Adam on Hutchinson Hessian-diagonal estimates (Yao et al., 2020)", None,
                            "8 + Hessian estimate", needs=(Need.CREATE_GRAPH,),
                            notes="Hutchinson Hessian-diagonal estimates"),
        "AdamP": facts("AdamP: Adam that projects out the radial component for scale-invariant weights", 8,
                       notes=_CAUTION),
        "AdamWLegacy": facts("AdamW, timm's own implementation (before torch's), with caution", 8, notes=_BOTH),
        "Adan": facts("Adan: adaptive Nesterov momentum (Xie et al., 2022), timm's implementation", 16,
                      notes=_CAUTION),
        "Adopt": facts("ADOPT: Adam that converges for any beta2 (Taniguchi et al., 2024), timm's", 8, notes=_BOTH),
        "Kron": facts("PSGD Kron: Kronecker-factored preconditioned SGD, timm's implementation", None,
                      "4 + Kronecker factors per tensor", module="timm.optim.kron",
                      notes=f"{_CORRECTED}; importing it sets torch.backends.opt_einsum.strategy='auto-hq' "
                            "for the whole process"),
        "Lamb": facts("LAMB: layer-wise adaptive large-batch Adam, timm's (trust_clip for LAMBC)", 8, notes=_BOTH),
        "LaProp": facts("LaProp: Adam with momentum of the normalised gradient (Ziyin et al., 2020)", 8,
                        notes=_BOTH),
        "Lars": facts("LARS: layer-wise adaptive rate scaling SGD, timm's (trust_clip for LARC)", None,
                      "4 with momentum, 0 without"),
        "Lion": facts("Lion: sign of interpolated momentum (Chen et al., 2023), timm's implementation", 4,
                      notes=_BOTH),
        "Lookahead": facts("Lookahead: slow weights pulled towards the inner optimizer's every k steps", None,
                           "a copy of the weights + the inner optimizer's", needs=(Need.BASE_OPTIMIZER,),
                           notes="wraps an optimizer instance: Lookahead(base_optimizer=AdamW(...), alpha=0.5, k=6)"),
        "MADGRAD": facts("MADGRAD: dual-averaged momentumised adaptive SGD, timm's implementation", 12),
        "Mars": facts("MARS: variance-reduced preconditioned updates (Yuan et al., 2024), timm's", 12,
                      notes=_CAUTION),
        "Muon": facts("Muon (or AdaMuon with algo='adamuon'): orthogonalised momentum for matrices, timm's", None,
                      "4 for matrices and conv kernels, 8 for the AdamW-fallback parameters",
                      notes="parameters that are not 2-D+ go to timm's own AdamW fallback at lr x fallback_lr_scale; "
                            "its defaults lr=0.02 and betas=(0.9, 0.95) are the Muon ones"),
        "NAdamLegacy": facts("NAdam, timm's implementation before torch's", 8),
        "NAdamW": facts("NAdamW: NAdam with decoupled weight decay (algorithmic-efficiency reference)", 8,
                        notes=_BOTH),
        "NvNovoGrad": facts("NovoGrad: per-layer normalised second moments (NVIDIA)", 4, notes=_CORRECTED),
        "RAdamLegacy": facts("RAdam, timm's implementation before torch's", 8),
        "RMSpropTF": facts("RMSprop, TensorFlow style: eps inside the sqrt, accumulator started at 1", 4,
                           "without momentum; 8 with", notes=_BOTH),
        "SGDP": facts("SGDP: SGD that projects out the radial component for scale-invariant weights", 4,
                      notes=_CAUTION),
        "SGDW": facts("SGD with decoupled weight decay (and caution), timm's", None, "4 with momentum, 0 without",
                      notes=_BOTH),
    },
)
