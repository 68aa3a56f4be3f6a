"""Backbones, necks, heads and detectors (registered in MODELS and TASK_UTILS)."""
