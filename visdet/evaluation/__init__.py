"""Detection metrics (registered in visdet's METRICS)."""
from visdet.evaluation.metrics import CocoMetric

__all__ = ['CocoMetric']
