"""lomo-optim: the LOMO authors' ``Lomo`` and ``AdaLomo``, what HF Trainer's ``optim='lomo'``/``'adalomo'`` build.

Both take the model and update inside backward (``fused_backward``), as
pytorch-optimizer's ``LOMO``/``AdaLOMO`` do; visdet's constructor passes the
model and ``wrappers/drivers/fused_backward.py`` drives them. The names do not
collide with pytorch-optimizer's (the catalogue's rule compares names exactly,
and ``Lomo`` is not ``LOMO``), so they keep their own class names. ``AdaLomo``
allocates its second-moment factors with ``.cuda()``: CUDA only. Importing the
package imports transformers (for its ZeRO-3 check).
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

_FUSED = ("takes the model; updates inside backward (fused_backward): no paramwise_cfg, no gradient accumulation, "
          "clip_grad becomes its own clip_grad_norm/clip_grad_value")

SOURCE = Source(
    rank=200,  # after the other sources: a name they take gets the prefix lomo_optim_
    package="lomo-optim",
    title="lomo-optim",
    specs={
        "Lomo": facts("LOMO: SGD fused into backward, no gradients kept (Lv et al., 2023)", 0,
                      needs=(Need.MODEL,), notes=_FUSED),
        "AdaLomo": facts("AdaLomo: factored adaptive LOMO (Lv et al., 2023)", None,
                         "factored: one row and one column vector per matrix", ("cuda",),
                         (Need.MODEL, Need.CUDA), notes=_FUSED + "; its state is allocated with .cuda()"),
    },
)
