"""bitsandbytes: 8-bit, 32-bit and paged optimizers.

Names that torch already uses (Adam, AdamW, SGD, Adagrad, RMSprop) are
registered with a ``bnb_`` prefix; the rest keep their own name.
"""
from __future__ import annotations

import re

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, OptimizerSpec, facts

MODULE = "bitsandbytes.optim"

# Base algorithm -> (description, number of per-parameter state tensors).
ALGORITHMS: dict[str, tuple[str, int]] = {
    "Adam": ("Adam", 2),
    "AdamW": ("AdamW (decoupled weight decay)", 2),
    "AdEMAMix": ("AdEMAMix: Adam with a second, slow EMA of gradients", 3),
    "Adagrad": ("Adagrad", 1),
    "LAMB": ("LAMB: layer-wise adaptive large-batch Adam", 2),
    "LARS": ("LARS: layer-wise adaptive rate scaling SGD", 1),
    "Lion": ("Lion: sign of interpolated momentum (Chen et al., 2023)", 1),
    "RMSprop": ("RMSprop", 1),
    "SGD": ("SGD with momentum", 1),
}
_PATTERN = re.compile(r"^(?P<paged>Paged)?(?P<algo>[A-Za-z]+?)(?P<bits>8bit|32bit)?$")
# Block-wise quantisation keeps one fp32 absmax per 256 values of each state.
_BLOCKWISE_OVERHEAD = 4 / 256
# Seen with bitsandbytes 0.50.2: the 32-bit AdEMAMix CPU path raises a shape
# error on the first step, so these are CUDA-only until a release fixes it.
_CPU_BROKEN = {"AdEMAMix32bit", "PagedAdEMAMix32bit"}

# Measured with benchmarks/bnb_cpu_step.py (bitsandbytes 0.50.2, torch 2.14.1, 2 CPU threads,
# 2026-11-25, nothing else running): AdamW8bit 240.6 ms/step against 12.4 ms for torch's fused
# fp32 AdamW on 26.7 M parameters (19.4x). The figure: ~354 vs ~18 ms (~20x).
CPU_8BIT_NOTE = (
    "slow on CPU: an 8-bit AdamW step took ~19x a fused fp32 AdamW step on 26.7 M parameters "
    "(241 vs 12 ms, 2 cores; benchmarks/bnb_cpu_step.py); prefer it where GPU memory is the limit"
)

KNOWN_NAMES = [
    f"{paged}{algo}{bits}"
    for algo in ALGORITHMS
    for paged in ("", "Paged")
    for bits in ("", "8bit", "32bit")
    if not paged or algo in {"Adam", "AdamW", "AdEMAMix", "Lion"}
] + ["PytorchLARS"]


def _facts(class_name: str) -> OptimizerSpec:
    """Facts read from the name: ``[Paged]<Algorithm>[8bit|32bit]``."""
    if class_name == "PytorchLARS":
        return facts("LARS in plain PyTorch ops (bitsandbytes reference)", 4, "with momentum")
    match = _PATTERN.match(class_name)
    if not match or match["algo"] not in ALGORITHMS:
        return facts()
    title, n_states = ALGORITHMS[match["algo"]]
    eight_bit = match["bits"] == "8bit"
    kind = "8-bit block-wise state" if eight_bit else "32-bit state"
    parts = [title, kind]
    notes = []
    if match["paged"]:
        parts.append("paged to CPU memory under GPU memory pressure")
        notes.append("paging needs CUDA; on CPU it falls back to unpaged state")
    if eight_bit:
        notes.append(f"tensors under min_8bit_size (4096 values) keep 32-bit state; {CPU_8BIT_NOTE}")
        state = round(n_states * (1 + _BLOCKWISE_OVERHEAD), 2)
        note = "approx.; small tensors keep 32-bit"
    else:
        state = 4.0 * n_states
        note = ""
    devices: tuple[str, ...] = ("cpu", "cuda")
    needs: tuple[Need, ...] = ()
    if class_name in _CPU_BROKEN:
        devices, needs = ("cuda",), (Need.CUDA,)
        notes.append("its CPU path fails in bitsandbytes 0.50")
    return facts(", ".join(parts), state, note, devices, needs, "; ".join(notes))


SOURCE = Source(
    rank=10, package="bitsandbytes", prefix="bnb_", export_modules=(MODULE,),
    specs={name: _facts(name) for name in KNOWN_NAMES},
    facts_for=_facts,
)
