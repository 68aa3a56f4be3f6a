"""The Muon hybrid: route parameters by shape, view conv kernels as matrices, step them behind one optimizer."""
from visdet.engine.optim.hybrid.matrix_views import has_matrix_view, matrix_view
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer
from visdet.engine.optim.hybrid.routing import (
    DEFAULT_FALLBACK_KEYS,
    FALLBACK,
    MATRIX,
    Route,
    RouteName,
    route_parameters,
)

__all__ = [
    "DEFAULT_FALLBACK_KEYS",
    "FALLBACK",
    "MATRIX",
    "HybridOptimizer",
    "Route",
    "RouteName",
    "has_matrix_view",
    "matrix_view",
    "route_parameters",
]
