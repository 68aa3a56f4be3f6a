"""Faster R-CNN: the two-stage detector with an RPN and a box RoI head."""
from __future__ import annotations

from visdet.models.detectors.two_stage import TwoStageDetector
from visdet.registry import MODELS


@MODELS.register_module()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN (Ren et al., 2015); the parts come from the config, as in mmdet."""
