"""Dense (per-anchor) heads (registered in MODELS)."""
from visdet.models.dense_heads.rpn_head import RPNHead

__all__ = ["RPNHead"]
