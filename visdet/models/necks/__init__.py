"""Necks (registered in MODELS)."""
from visdet.models.necks.fpn import FPN

__all__ = ["FPN"]
