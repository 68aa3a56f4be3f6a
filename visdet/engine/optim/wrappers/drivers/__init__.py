"""The drivers of optimizers that need their own training iteration, one module per kind.

Importing this package registers every driver with
:func:`visdet.engine.optim.wrappers.train_step.register_driver`; a new kind is
one module here and one import line below.
"""
from __future__ import annotations
from visdet.engine.optim.wrappers.drivers import second_order  # noqa: F401  (SophiaH, AdaHessian)
from visdet.engine.optim.wrappers.drivers import closure  # noqa: F401  (SAM family, LBFGS, AliG, *ScheduleFreeClosure)
from visdet.engine.optim.wrappers.drivers import fused_backward  # noqa: F401  (LOMO, AdaLOMO)
from visdet.engine.optim.wrappers.drivers import loss_list  # noqa: F401  (PCGrad: pc_backward(loss terms))
