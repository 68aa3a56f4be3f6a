"""grokadamw: GrokAdamW, AdamW amplifying slow gradients (what HF Trainer's ``optim="grokadamw"`` builds).

What 0.1.x does beyond AdamW, read from its source and seen stepping it on CPU:

- ``grokking_signal_fns`` are callables (e.g. the gap between validation and
  training loss); a config cannot hold them, so from a config the signal is 0
  (alpha stays ``alpha_init``) unless a group carries ``train_loss``/``eval_loss``;
- ``gradient_clipping=1.0`` clips *each parameter's* gradient to norm 1.0 (0 turns it off);
- beta1 shrinks with a parameter's index in its group (``beta1 * (1 - gamma) ** i``), so
  visdet's merged groups change it; ``gamma=0`` gives every parameter beta1;
- it keeps its moments in ``param_groups[i]['state']``, keyed by the parameter
  tensors, not in ``optimizer.state``: a ``state_dict`` round trip (a resumed
  checkpoint) restarts them, and its moments live on the CPU whatever the device.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import facts

NOTES = (
    "from a config its grokking signal is 0 (grokking_signal_fns are callables); clips each parameter's "
    "gradient to norm gradient_clipping=1.0; a resumed checkpoint restarts its moments (kept in param_groups, "
    "on the CPU)"
)

SOURCE = Source(
    rank=160, package="grokadamw", title="grokadamw",
    specs={
        "GrokAdamW": facts("GrokAdamW: AdamW plus an EMA of gradients that amplifies slow components", None,
                           "12, kept in param_groups (not optimizer.state) on the CPU", notes=NOTES),
    },
)
