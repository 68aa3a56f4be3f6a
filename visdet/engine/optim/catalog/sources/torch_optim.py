"""torch.optim and torch.distributed.optim: always installed, introspected live.

torch is imported by then anyway, so the live module is the truth: every
``torch.optim.Optimizer`` subclass it exports is registered, including ones a
newer torch adds. Only ``ZeroRedundancyOptimizer`` is resolved lazily, because
importing ``torch.distributed.optim`` costs noticeably more than the rest.
"""
from __future__ import annotations

import torch

from visdet.engine.optim.catalog.spec import Meta, Need
from visdet.engine.optim.catalog.source import Found, Source

# torch's Adafactor is registered as TorchAdafactor: the plain name is kept
# for transformers' Adafactor, which is what MMEngine configs mean by it.
RENAMES = {"Adafactor": "TorchAdafactor"}

CATALOGUE: dict[str, Meta] = {
    "SGD": Meta("Stochastic gradient descent, optional (Nesterov) momentum", 4, "with momentum; 0 without"),
    "Adam": Meta("Adam: adaptive moments (Kingma & Ba, 2014)", 8, "12 with amsgrad"),
    "AdamW": Meta("Adam with decoupled weight decay (Loshchilov & Hutter, 2017)", 8, "12 with amsgrad"),
    "Adamax": Meta("Adam variant on the infinity norm", 8),
    "NAdam": Meta("Adam with Nesterov momentum", 8),
    "RAdam": Meta("Rectified Adam: variance-corrected warm-up", 8),
    "Adagrad": Meta("Per-parameter rates from accumulated squared gradients", 4),
    "Adadelta": Meta("Adagrad variant with running averages, no base lr needed", 8),
    "RMSprop": Meta("Running average of squared gradients", 4, "+4 momentum, +4 centered"),
    "Rprop": Meta("Resilient backprop: sign-based, full-batch", 8),
    "ASGD": Meta("Averaged SGD", 4),
    "SparseAdam": Meta("Adam for sparse gradients (nn.Embedding sparse=True)", 8),
    "LBFGS": Meta("Limited-memory BFGS; needs a closure, full-batch", 800, "history_size=100 x 2 vectors"),
    "Muon": Meta("Orthogonalised momentum (Newton-Schulz) for 2-D weights only", 4),
    "Adafactor": Meta("Factored second moments (Shazeer & Stern, 2018)", None, "sub-linear (row+column factors)"),
}

ZERO = Found("ZeroRedundancyOptimizer", "torch.distributed.optim")
ZERO_META = Meta(
    "Shards another optimizer's state across processes (ZeRO stage 1)",
    None,
    "inner optimizer's / world size",
    needs=(Need.DISTRIBUTED,),
)


class TorchSource(Source):
    """The optimizers that ship with torch."""

    def __init__(self) -> None:
        super().__init__(
            package="torch",
            top_level="torch",
            title="PyTorch",
            install_hint="pip install torch",
            prefix="torch_",
            export_modules=("torch.optim",),
            known=tuple(Found(n, "torch.optim") for n in CATALOGUE) + (ZERO,),
        )

    @property
    def version(self) -> str:  # type: ignore[override]
        return torch.__version__.split("+")[0]

    def discover(self) -> list[Found]:
        found = [
            Found(name, "torch.optim")
            for name in sorted(dir(torch.optim))
            if isinstance(obj := getattr(torch.optim, name), type)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
        ]
        if torch.distributed.is_available():
            found.append(ZERO)
        return found

    def describe(self, found: Found) -> str:
        obj = getattr(torch.optim, found.class_name, None)
        doc = (getattr(obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    def meta(self, class_name: str) -> Meta:
        if class_name == ZERO.class_name:
            return ZERO_META
        return CATALOGUE.get(class_name, Meta())

    def registry_name(self, class_name: str) -> str:
        return RENAMES.get(class_name, class_name)
