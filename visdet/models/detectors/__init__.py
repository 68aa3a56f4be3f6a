"""Detectors (registered in MODELS)."""
from visdet.models.detectors.faster_rcnn import FasterRCNN
from visdet.models.detectors.two_stage import TwoStageDetector

__all__ = ["FasterRCNN", "TwoStageDetector"]
