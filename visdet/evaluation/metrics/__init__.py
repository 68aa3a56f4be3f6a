"""Detection metrics."""
from visdet.evaluation.metrics.coco_metric import CocoMetric

__all__ = ['CocoMetric']
