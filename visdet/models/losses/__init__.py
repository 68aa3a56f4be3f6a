"""Losses (registered in MODELS)."""
from visdet.models.losses.accuracy import accuracy
from visdet.models.losses.cross_entropy_loss import CrossEntropyLoss
from visdet.models.losses.l1_losses import L1Loss, SmoothL1Loss

__all__ = ["CrossEntropyLoss", "L1Loss", "SmoothL1Loss", "accuracy"]
