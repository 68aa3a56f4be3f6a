"""torch.optim and torch.distributed.optim: always installed, read live.

torch is imported by then anyway, so the live module is the truth: every
``torch.optim.Optimizer`` subclass it exports is registered, including ones a
newer torch adds. Only ``ZeroRedundancyOptimizer`` is resolved lazily, because
importing ``torch.distributed.optim`` costs noticeably more than the rest.
torch's Adafactor is registered as ``TorchAdafactor``: the plain name is kept
for transformers' Adafactor, which is what MMEngine configs mean by it.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

SOURCE = Source(
    rank=0, package="torch", title="PyTorch", export_modules=("torch.optim",), live=True,
    renames={"Adafactor": "TorchAdafactor"},
    specs={
        "SGD": facts("Stochastic gradient descent, optional (Nesterov) momentum", 4, "with momentum; 0 without"),
        "Adam": facts("Adam: adaptive moments (Kingma & Ba, 2014)", 8, "12 with amsgrad"),
        "AdamW": facts("Adam with decoupled weight decay (Loshchilov & Hutter, 2017)", 8, "12 with amsgrad"),
        "Adamax": facts("Adam variant on the infinity norm", 8),
        "NAdam": facts("Adam with Nesterov momentum", 8),
        "RAdam": facts("Rectified Adam: variance-corrected warm-up", 8),
        "Adagrad": facts("Per-parameter rates from accumulated squared gradients", 4),
        "Adadelta": facts("Adagrad variant with running averages, no base lr needed", 8),
        "RMSprop": facts("Running average of squared gradients", 4, "+4 momentum, +4 centered"),
        "Rprop": facts("Resilient backprop: sign-based, full-batch", 8),
        "ASGD": facts("Averaged SGD", 4),
        "SparseAdam": facts("Adam for sparse gradients (nn.Embedding sparse=True)", 8),
        "LBFGS": facts("Limited-memory BFGS; needs a closure, full-batch", 800, "history_size=100 x 2 vectors",
                       needs=(Need.CLOSURE,)),
        "Muon": facts("Orthogonalised momentum (Newton-Schulz) for 2-D weights only", 4, matrix_only=True),
        "Adafactor": facts("Factored second moments (Shazeer & Stern, 2018)", None, "sub-linear (row+column factors)"),
        "ZeroRedundancyOptimizer": facts(
            "Shards another optimizer's state across processes (ZeRO stage 1)", None,
            "inner optimizer's / world size", needs=(Need.DISTRIBUTED,), shards_state=True,
            module="torch.distributed.optim",
        ),
    },
)
