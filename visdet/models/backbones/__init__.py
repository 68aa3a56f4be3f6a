"""Backbones (registered in MODELS)."""
from visdet.models.backbones.resnet import ResNet

__all__ = ["ResNet"]
