"""heavyball: compile-first optimizers built from chainable transforms (SOAP, PSGD, Muon and more).

Names taken by higher-ranked sources (``AdamW``, ``SGD``, ``NAdam``, ``RMSprop``,
``LaProp``, ``ADOPT``, ``AdEMAMix``, ``AdamC``, ``SOAP``, ``Muon`` ...) are
registered with the ``heavyball_`` prefix (``heavyball_Muon`` is not torch's
Muon); the rest keep their own. heavyball computes its ``__all__`` at import
(every ``Optimizer`` subclass but ``SOAPBase`` and ``PSGDBase``), which a scan
of its files cannot evaluate, so ``only`` lists the classes it exports (3.2).

Behaviour a loop must know (checked by tests/engine/optim/catalog/test_source_heavyball.py):
``step()`` consumes ``p.grad`` (sets it to None) unless ``consume_grad=False``;
visdet's wrapper logs, clips and checks gradients for non-finite values before
``step()``, so that is unaffected. Its update kernels are torch.compile'd
(``compile_mode`` in ``heavyball.utils``; inductor needs a C++ compiler on CPU):
the first step of a new shape compiles.
"""
from __future__ import annotations

from dataclasses import replace

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec, facts

_COMPILE = ("its update kernels are torch.compile'd (inductor): the first step of each new parameter shape "
            "compiles, seconds on CPU; caution=True masks update entries whose sign disagrees with the gradient")
_MODES = ("schedule-free: train()/eval() switch the weights (visdet's ScheduleFreeHook does it around "
          "validation and saves); " + _COMPILE)
_NEEDS = (Need.CXX_COMPILER,)


def _f(description: str, notes: str = _COMPILE, needs: tuple[Need, ...] = _NEEDS) -> OptimizerSpec:
    return facts(f"{description} (heavyball)", needs=needs, notes=notes)


_SPECS: dict[str, OptimizerSpec] = {
    "SGD": _f("SGD with heavy-ball momentum"),
    "AdamW": _f("AdamW, foreach and compiled"),
    "NAdam": _f("NAdam: Adam with Nesterov momentum"),
    "AdEMAMix": _f("AdEMAMix: Adam with a second, slow EMA of gradients"),
    "UnscaledAdamW": _f("AdamW without bias correction of the second moment"),
    "SUDSAdamW": _f("SUDSAdamW: AdamW after a rank-1 Fisher-direction preconditioner fit by Oja's rule"),
    "Scion": _f("Scion: norm-constrained linear minimisation oracle, the norm chosen per tensor shape"),
    "AdamC": _f("AdamC: Adam with weight decay scaled by lr / max_lr"),
    "RMSprop": _f("Debiased RMSprop (not torch.optim.RMSprop)"),
    "HyperBallAdamW": _f("HyperBall (updates keep each 2-D+ weight at its initial norm) and AdamW for 1-D"),
    "MuonAdamW": _f("Muon for 2-D+ parameters and AdamW for 1-D ones, in one optimizer"),
    "SFAdamW": _f("Schedule-free AdamW", _MODES),
    "MSAMLaProp": _f("Momentum-SAM around an RMSprop-style update: sharpness-aware without a second pass", _MODES),
    "ADOPT": _f("ADOPT: Adam with the current gradient left out of its second moment"),
    "Muon": _f("Muon: orthogonalised momentum, heavyball's (not torch's Muon)"),
    "LaProp": _f("LaProp: momentum of the normalised gradient"),
    "MuonLaProp": _f("LaProp's adaptivity feeding Muon's orthogonalisation"),
    "SOAP": _f("SOAP: Adam in Shampoo's eigenbasis"),
    "KLSOAP": _f("KLSOAP: SOAP with KL-Shampoo's Kronecker factors"),
    "KLShampoo": _f("KL-Shampoo: Shampoo with KL-corrected Kronecker factors"),
    "SOAPNAdam": _f("SOAP with NAdam in the eigenbasis"),
    "SOAPAdEMAMix": _f("SOAP with AdEMAMix in the eigenbasis"),
    "SignLaProp": _f("LaProp followed by sign normalisation of the update"),
    "SOLP": _f("SOLP: SOAP with LaProp in the eigenbasis"),
    "HeavySOAP": _f("HeavySOAP: SOAP with post-orthogonalisation Q sort and Hadamard-square moment transport"),
    "HeavyKLSOAP": _f("KLSOAP with HeavySOAP's eigenbasis update and pinv KL inversion"),
    "HeavyKLShampoo": _f("KLShampoo with Moore-Penrose pinv KL inversion"),
    "HeavySOAPNAdam": _f("SOAPNAdam with HeavySOAP's eigenbasis update"),
    "HeavySOAPAdEMAMix": _f("SOAPAdEMAMix with HeavySOAP's eigenbasis update"),
    "HeavySOLP": _f("SOLP with HeavySOAP's eigenbasis update"),
    "OrthoLaProp": _f("OrthoGrad on the gradient (its radial part removed), then LaProp"),
    "LaPropOrtho": _f("LaProp, then OrthoGrad on its update"),
    "PSGDKron": _f("PSGD with Kronecker-factored preconditioners (Kron)"),
    "LATHER": _f("LATHER: Adam in the eigenspace of a PSGD-Kron preconditioner"),
    "PSGDPRO": _f("PSGD-Kron with the Procrustes (PRO) update of its factor Q"),
    "QSGD": _f("QSGD: PSGDPRO applying the factor Q instead of P"),
    "PSGDLRA": replace(_f("PSGD with a low-rank-approximation preconditioner"), required=("rank",),
                       notes="set rank= (its default derives it from a list of tensors, which parameter groups "
                       "are not); " + _COMPILE),
    "SplitOpt": facts(
        "Different parameter groups stepped by different heavyball optimizers (heavyball)",
        needs=(Need.PARAM_LAYOUT,),
        notes="built from a list of group specs each naming its optimizer class, not from parameters; in "
              "visdet give modules their own optimizer with paramwise_cfg custom_keys[k].optimizer"),
    "SAMWrapper": facts(
        "Adaptive SAM (ASAM) around a heavyball optimizer (heavyball)", needs=(Need.CLOSURE, *_NEEDS),
        notes="step(closure) only (it raises without one; visdet's closure driver gives one); takes no lr: "
              "wrapped_optimizer= a heavyball class (built with its default lr; default AdamW) or instance; "
              + _COMPILE),
}

SOURCE = Source(
    rank=127, package="heavyball", install_hint="pip install 'heavyball>=3.2,<3.3'",
    specs=_SPECS, only=frozenset(_SPECS), default=facts(needs=_NEEDS, notes=_COMPILE),
)
